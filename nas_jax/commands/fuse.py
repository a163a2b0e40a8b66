"""``nas-jax fuse --workdir W``: fuse a trained run into its deploy network, write it to
``W/deploy`` (orbax, ``{'params'}`` of ``block='deploy'``, plus ``deploy.json`` with the
model settings, and a pruned network's per-layer ``widths``), and check it against the
trained model on one validation batch."""
from __future__ import annotations

import json

HELP = "fuse a trained run into its deploy form (W/deploy) and check it on a validation batch"


def add_arguments(parser) -> None:
    parser.add_argument("--workdir", required=True)


def run(args) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from nas_jax.rep.fuse import deploy_form, fuse_params
    from nas_jax.train.checkpoint import save_deploy
    from nas_jax.train.run import Run

    run = Run.restore(args.workdir)
    config, task = run.config, run.classification_task()
    state = run.restored_state(task)
    variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    eval_data = run.eval_data
    batch = next(eval_data.eval_batches(config.eval_batch_size))
    input_shape = (1,) + tuple(eval_data.image_shape)
    deploy_model = deploy_form(task.model, variables, input_shape=input_shape)
    # compiled: the tracing forward pass inside fuse_params is dead code to XLA
    deploy_variables = jax.device_get(jax.jit(lambda v: fuse_params(task.model, v, input_shape=input_shape)[1])(
        variables))
    with jax.default_matmul_precision("highest"):
        trained = np.asarray(jax.jit(lambda v, x: task.model.apply(v, x, train=False))(variables, jnp.asarray(batch["image"])))
        deployed = np.asarray(jax.jit(lambda v, x: deploy_model.apply(v, x, train=False))(deploy_variables,
                                                                                jnp.asarray(batch["image"])))
    real = batch["mask"] > 0
    out_dir = save_deploy(args.workdir, deploy_variables, {
        "model": config.model, "width": config.width, "num_classes": eval_data.num_classes, "dtype": config.dtype,
        "step": int(state.step),
        "widths": [list(w) for w in getattr(task.model, "widths", ())],  # a pruned zoo network's
        "overrides": [[p, dict(c)] for p, c in getattr(task.model, "overrides", ())]})  # a pruned user network's

    def accuracy(logits):
        return float(np.mean(logits[real].argmax(-1) == batch["label"][real]))

    print(json.dumps({"deploy_dir": out_dir, "examples": int(real.sum()),
                      "max_abs_logit_diff": float(np.abs(trained[real] - deployed[real]).max()),
                      "max_abs_logit": float(np.abs(trained[real]).max()),
                      "accuracy_trained": accuracy(trained), "accuracy_deploy": accuracy(deployed)}))
    return 0
