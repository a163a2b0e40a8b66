"""``nas-jax train --config F --workdir W [--config.key=value ...]``: train (or resume)
any zoo model with any block kind on a config's dataset."""
from __future__ import annotations

import json

HELP = "train or resume a zoo model from an ml_collections config (--config.key=value overrides)"


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="experiments/configs/*.py with get_config()")
    parser.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl, TensorBoard, curve")
    parser.set_defaults(takes_config_overrides=True)


def run(args) -> int:
    from nas_jax.train.config import apply_overrides, load_config
    from nas_jax.train.loop import train
    from nas_jax.train.metrics import read_metrics
    from nas_jax.train.run import Run

    config = apply_overrides(load_config(args.config), args.config_overrides)
    state = train(Run(config, args.workdir))
    evals = [r for r in read_metrics(args.workdir) if r["split"] == config.eval_split]
    print(json.dumps({"step": int(state.step), **(evals[-1] if evals else {})}))
    return 0
