"""``nas-jax import torchvision|timm NAME --weights F.pth --workdir W [--config F]``: a
PyTorch checkpoint as a nas_jax run at step 0.

Writes ``W/network`` (the zoo network at the checkpoint's widths, the format of
``nas-jax prune export``) and ``W/config.json`` + ``W/checkpoints/0`` (orbax), a run whose
config fine-tunes that network on the config's dataset (default
``experiments/configs/train_digits.py``-like defaults: ``default_config()``). Then
``nas-jax eval --workdir W`` evaluates it, ``nas-jax fuse --workdir W`` writes its deploy
form, ``nas-jax train --config F --workdir W`` fine-tunes it (resuming at step 0), and
``--config.init_from=W/network`` starts any other run from it. The checkpoint's class
count must be the dataset's. A timm RepVGG keeps its train-time branches (RepNAS blocks
with a fixed branch mask, recorded in ``W/network/model.json``); ``fuse`` fuses them.
"""
from __future__ import annotations

import json
import os

HELP = "import a torchvision or timm checkpoint (.pth) as a run at step 0 (eval, fuse, fine-tune)"


def add_arguments(parser) -> None:
    parser.add_argument("source", choices=("torchvision", "timm"))
    parser.add_argument("name", help="the PyTorch model name, e.g. resnet18, resnet50, mobilenet_v2")
    parser.add_argument("--weights", required=True, help="a .pth/.pt state_dict (or a checkpoint holding one)")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--config", default=None, help="experiments/configs/*.py for the data and fine-tuning")
    parser.set_defaults(takes_config_overrides=True)


def run(args) -> int:
    from nas_jax.interop.third_party import architecture, from_timm, from_torchvision
    from nas_jax.models.network import ZooSpec, save_network
    from nas_jax.train.config import apply_overrides, default_config, load_config
    from nas_jax.train.loop import train
    from nas_jax.train.run import Run, pipeline_from_config

    config = apply_overrides(load_config(args.config) if args.config else default_config(), args.config_overrides)
    arch = architecture(args.source, args.name)
    data = pipeline_from_config(config, config.eval_split)
    size = data.image_shape[0]
    importer = from_torchvision if args.source == "torchvision" else from_timm
    try:
        model, variables = importer(args.name, args.weights, (1, size, size, data.image_shape[-1]))
    except (ValueError, OSError, RuntimeError, EOFError) as err:  # bad names, shapes or file
        raise ValueError(f"cannot import {args.weights} as {args.source} {args.name}:\n{err}") from err
    if model.num_classes != data.num_classes:
        raise ValueError(f"{args.weights} has {model.num_classes} classes, the dataset {config.dataset!r} has "
                         f"{data.num_classes}; pick a config whose dataset matches")
    network = os.path.abspath(os.path.join(args.workdir, "network"))
    spec = ZooSpec(arch.zoo_name, model.num_classes, model.width, size)
    save_network(network, spec, model, variables)
    config.model, config.block, config.width, config.init_from = arch.zoo_name, model.block, model.width, network
    train(Run(config, args.workdir), stop_at_step=0, progress_bar=False)
    print(json.dumps({"workdir": os.path.abspath(args.workdir), "network": network, "model": arch.zoo_name,
                      "num_classes": model.num_classes, "widths": [list(w) for w in model.widths]}))
    return 0
