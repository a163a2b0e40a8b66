"""Bring your own model: a user's network in its own file, pruned by Graph Pruning and
fused, end to end on the embedded digits.

    python experiments/custom_model.py --workdir W

The model below is written as a user writes one: plain ints for its layer sizes, a
concatenated skip, a flatten before two Dense layers, and conv-BN layers picked with
``nas_jax.models.conv_block`` so the same class also trains with DBB branches and fuses.
The commands name it as ``experiments/custom_model.py:small_net``
(``experiments/configs/prune_custom_digits.py``). Stages:

1. ``nas-jax prune graph`` draws its layer graph (``W/graph.png``);
2. ``nas-jax prune train`` trains the Graph PruningNet on it (``W/prune``);
3. ``nas-jax prune search --method evolution --budget flops=0.5``;
4. ``nas-jax prune export``: the best configuration as the same class at smaller widths,
   checked against the masked forward;
5. ``fuse_params`` on the DBB form of the same class (random weights and BatchNorm
   statistics): the fused network against the multi-branch one.

Each command resumes from its own checkpoints when the script is run again. Writes
``W/custom_model.json`` with every stage's figures and wall-clock seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import flax.linen as nn
import jax.numpy as jnp

from nas_jax.models import BlockSpec, conv_block

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = "experiments/custom_model.py:small_net"


class SmallNet(nn.Module):
    """32x32 images -> logits: conv-BN x 4 with a concatenated skip, max pool, flatten,
    Dense 64, Dense ``num_classes``."""
    num_classes: int = 10
    block: str = "plain"

    @nn.compact
    def __call__(self, x, train: bool = False):
        spec = BlockSpec(self.block)
        x = nn.relu(conv_block(spec, self, 16, 3, name="stem")(x, train))
        down = nn.relu(conv_block(spec, self, 32, 3, 2, name="down")(x, train))
        mid = nn.relu(conv_block(spec, self, 32, 3, name="mid")(down, train))
        x = jnp.concatenate([down, mid], axis=-1)
        x = nn.relu(conv_block(spec, self, 32, 3, 2, name="reduce")(x, train))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Dense(64, name="fc1")(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.num_classes, name="fc2")(x)


def small_net(num_classes: int = 10, block: str = "plain") -> SmallNet:
    return SmallNet(num_classes, block)


def fuse_demo() -> dict:
    """The DBB form of ``SmallNet`` with random weights and statistics, fused."""
    import jax

    from nas_jax.rep.fuse import fuse_params
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from helpers import random_variables, rel_l2

    model = small_net(10, "dbb")
    x = jax.random.normal(jax.random.key(0), (8, 32, 32, 3))
    variables = random_variables(model, x, seed=0)
    deploy_model, deploy_variables = fuse_params(model, variables, input_shape=(1, 32, 32, 3))
    with jax.default_matmul_precision("highest"):
        trained, fused = model.apply(variables, x), deploy_model.apply(deploy_variables, x)
    count = lambda v: sum(a.size for a in jax.tree.leaves(v["params"]))  # noqa: E731
    return {"relative_l2": rel_l2(fused, trained), "params_dbb": int(count(variables)),
            "params_deploy": int(count(deploy_variables))}


def main(argv=None) -> int:
    from nas_jax.cli import main as nas_jax

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--config", default="experiments/configs/prune_custom_digits.py")
    parser.add_argument("--search-config", default="experiments/configs/prune_search_digits.py")
    parser.add_argument("--budget", default="flops=0.5")
    args, overrides = parser.parse_known_args(argv)
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    os.chdir(REPO)  # the model is named by its path from the repository root
    prune, export = os.path.join(workdir, "prune"), os.path.join(workdir, "export")
    figures, start = {}, time.time()

    def stage(name, command):
        t = time.time()
        if nas_jax(command) != 0:
            raise SystemExit(f"stage {name} failed: nas-jax {' '.join(command)}")
        figures[f"{name}_seconds"] = round(time.time() - t, 1)

    stage("graph", ["prune", "graph", "--model", TARGET, "--num-classes", "10", "--image-size", "32",
                    "--out", os.path.join(workdir, "graph.png")])
    stage("train", ["prune", "train", "--config", args.config, "--workdir", prune, *overrides])
    with open(os.path.join(prune, "report.json")) as f:
        figures["accuracy_by_width"] = json.load(f)["accuracy_by_width"]
    stage("search", ["prune", "search", "--workdir", prune, "--method", "evolution", "--budget", args.budget,
                     "--config", args.search_config])
    best = os.path.join(prune, "search", "evolution", "best.json")
    stage("export", ["prune", "export", "--workdir", prune, "--widths", best, "--out", export])
    with open(os.path.join(export, "report.json")) as f:
        figures["export"] = json.load(f)
    with open(best) as f:
        figures["search"] = {k: v for k, v in json.load(f).items() if k in ("flops_ratio", "val_accuracy",
                                                                             "params_ratio", "evaluations")}
    figures["fuse"] = fuse_demo()
    figures["total_seconds"] = round(time.time() - start, 1)
    with open(os.path.join(workdir, "custom_model.json"), "w") as f:
        json.dump(figures, f, indent=1)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
