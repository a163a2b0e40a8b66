"""``nas-jax eval --workdir W [--split S]``: accuracy and loss of a run's newest checkpoint."""
from __future__ import annotations

import json

HELP = "evaluate the newest checkpoint of a training run"


def add_arguments(parser) -> None:
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--split", default=None, help="default: the config's eval_split")


def run(args) -> int:
    from nas_jax.common import compiler_options
    from nas_jax.train.loop import evaluate, pipeline_from_config, restore_run
    from nas_jax.train.step import eval_step_fn, jit_eval_step

    config, task, state, mesh = restore_run(args.workdir)
    split = args.split or config.eval_split
    step = jit_eval_step(eval_step_fn(task), mesh, compiler_options(config.get("cpu_skip_algsimp", False)))
    result = evaluate(step, state, pipeline_from_config(config, split),
                      config.eval_batch_size, mesh)
    print(json.dumps({"step": int(state.step), "split": split, **result}))
    return 0
