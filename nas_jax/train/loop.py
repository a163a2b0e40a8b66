"""The training loop: ``train(run, task=None)``.

One loop for every kind of training; what differs goes into a ``Task`` (see
``nas_jax.train.task``): the plain / DBB baselines use the run's ``ClassificationTask``
(when ``task`` is None), the RepNAS search and the pruning trainer pass their own; the
``Run`` (``nas_jax.train.run``) holds the config, pipelines, mesh and schedule. Per step
the host only fetches and shards the next batch and dispatches the compiled step; metrics
stay on the device until a logging point (every ``log_every`` steps), where they are
averaged and written. A checkpoint is written every ``checkpoint_every`` steps, at the
end, and on SIGTERM (after the current step); a restarted run resumes from the newest
readable checkpoint and sees the same batches and random numbers as an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import signal
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from nas_jax.common import compiler_options
from nas_jax.data import Pipeline
from nas_jax.train.checkpoint import Restored
from nas_jax.train.config import config_to_json
from nas_jax.train.metrics import RunLogger
from nas_jax.train.run import CHECKPOINT_DIR, Run, example_batch
from nas_jax.train.step import (create_train_state, eval_step_fn, jit_eval_step, jit_train_step, replicated,
                                shard_batch, train_step_fn)
from nas_jax.train.task import Task


def evaluate(eval_step, state, pipeline: Pipeline, batch_size: int, mesh) -> Dict[str, float]:
    """``{'loss', 'accuracy', 'count'}`` over one pass of ``pipeline`` (a compiled
    ``eval_step`` from ``jit_eval_step(eval_step_fn(task), mesh)``)."""
    sums = None
    for batch in pipeline.eval_batches(batch_size):
        out = eval_step(state, shard_batch(batch, mesh))
        sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
    sums = jax.device_get(sums)
    count = float(sums["count"])
    return {"loss": float(sums["loss_sum"]) / count, "accuracy": float(sums["correct"]) / count, "count": count}


@contextlib.contextmanager
def _sigterm_flag():
    """A list that becomes ``[True]`` when SIGTERM arrives (main thread only)."""
    flag = []
    try:
        previous = signal.signal(signal.SIGTERM, lambda *_: flag.append(True))
    except ValueError:  # not the main thread
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def _mean_metrics(pending) -> Dict[str, float]:
    host = jax.device_get(pending)
    return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


def train(run: Run, task: Optional[Task] = None, *, until: Optional[int] = None,
          checkpoint_dir: str = CHECKPOINT_DIR, start_from: Optional[Callable[[], Restored]] = None,
          stop_at_step: Optional[int] = None, progress_bar: Optional[bool] = None):
    """Trains (or resumes) ``run`` with ``task`` (default: ``run.classification_task()``);
    returns the final ``TrainState``.

    A run in segments, each its own task (the RepNAS search, then its fixed sub-network):
    ``until`` ends this segment at that step of the schedule (which still spans the
    config's steps) with a checkpoint; ``checkpoint_dir`` (under ``workdir``) holds the
    segment's checkpoints; ``start_from()`` gives the ``Restored`` step, state and data
    position a segment without checkpoints of its own starts from (default: step 0,
    ``task.init``). ``stop_at_step`` ends the run early as a kill would (after saving a
    checkpoint there if it falls on ``checkpoint_every``); ``progress_bar`` None = a bar on
    a terminal only.
    """
    config, mesh, train_data, steps = run.config, run.mesh, run.train_data, run.steps
    task = task or run.classification_task()
    tx, learning_rate_fn = run.optimizer
    rng = jax.random.PRNGKey(config.seed)
    config_json = config_to_json(config)
    run.write_config()

    end = min(steps if until is None else until, steps if stop_at_step is None else stop_at_step)
    batches = train_data.train_batches(config.batch_size, config.seed)
    checkpointer = run.checkpointer(checkpoint_dir)
    restored = checkpointer.restore_latest(run.abstract_state(task))
    if restored is None and start_from is not None:
        restored = start_from()
        restored = restored._replace(state=jax.device_put(restored.state, replicated(mesh)))
    if restored is None:
        state = create_train_state(task, tx, config.seed, example_batch(train_data), mesh)
        start = 0
    else:
        state, start = restored.state, restored.step
        batches.set_state(restored.data_state)
        if start >= end:  # nothing left to train in this segment
            checkpointer.close()
            return state
    logger = RunLogger(run.workdir, steps, start, progress_bar)
    options = compiler_options(config.cpu_skip_algsimp)
    train_step = jit_train_step(train_step_fn(task, tx, learning_rate_fn), mesh, options)
    eval_step = jit_eval_step(eval_step_fn(task), mesh, options)
    if restored is None and end == 0:  # stopped at step 0: the initial state is the checkpoint
        checkpointer.save(0, state, batches.get_state(), config_json)
    pending = []
    with _sigterm_flag() as terminated:
        for step in range(start, end):
            state, metrics = train_step(state, shard_batch(next(batches), mesh), rng)
            pending.append(metrics)
            logger.advance()
            done = step + 1
            if done % config.log_every == 0 or done == end:
                summary = _mean_metrics(pending)
                pending = []
                logger.write(done, "train", summary)
                task.on_log(state, done, summary)
            if (config.eval_every and done % config.eval_every == 0) or done == steps:
                logger.write(done, config.eval_split, evaluate(eval_step, state, run.eval_data,
                                                               config.eval_batch_size, mesh))
            if done % config.checkpoint_every == 0 or done in (until, steps) or terminated:
                checkpointer.save(done, state, batches.get_state(), config_json)
            if terminated:
                break
    checkpointer.wait()
    checkpointer.close()
    logger.close()
    return state
