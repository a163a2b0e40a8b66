"""Training: a ``Task`` (model + loss + optional hooks) run by one loop over a device mesh.

    from nas_jax.train import Run, train, default_config
    state = train(Run(default_config(), "/tmp/run"))    # ResNet-18 on digits

See ``task`` (the extension point), ``run`` (a job's assembly point), ``step`` (compiled,
sharded steps), ``loop``, ``checkpoint``, ``optim``, ``metrics`` and ``config``.
"""
from nas_jax.train.checkpoint import Checkpointer, Restored
from nas_jax.train.config import ConfigError, apply_overrides, default_config, load_config
from nas_jax.train.loop import evaluate, train
from nas_jax.train.run import Run
from nas_jax.train.optim import create_optimizer
from nas_jax.train.state import TrainState
from nas_jax.train.step import (abstract_train_state, create_mesh, create_train_state, eval_step_fn,
                                jit_eval_step, jit_train_step, shard_batch, train_step_fn)
from nas_jax.train.task import ClassificationTask, Task, cross_entropy

__all__ = ["train", "evaluate", "Run", "default_config", "load_config", "apply_overrides", "ConfigError",
           "TrainState", "Task", "ClassificationTask", "cross_entropy", "create_optimizer", "Checkpointer",
           "Restored", "create_mesh", "shard_batch", "create_train_state", "abstract_train_state",
           "train_step_fn", "eval_step_fn", "jit_train_step", "jit_eval_step"]
