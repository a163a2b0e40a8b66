"""``nas-jax eval --workdir W [--split S]``: accuracy and loss of a run's newest checkpoint."""
from __future__ import annotations

import json

HELP = "evaluate the newest checkpoint of a training run"


def add_arguments(parser) -> None:
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--split", default=None, help="default: the config's eval_split")


def run(args) -> int:
    from nas_jax.common import compiler_options
    from nas_jax.train.loop import evaluate
    from nas_jax.train.run import Run
    from nas_jax.train.step import eval_step_fn, jit_eval_step

    run = Run.restore(args.workdir)
    task = run.classification_task()
    state = run.restored_state(task)
    split = args.split or run.config.eval_split
    step = jit_eval_step(eval_step_fn(task), run.mesh, compiler_options(run.config.get("cpu_skip_algsimp", False)))
    result = evaluate(step, state, run.pipeline(split), run.config.eval_batch_size, run.mesh)
    print(json.dumps({"step": int(state.step), "split": split, **result}))
    return 0
