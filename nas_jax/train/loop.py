"""The training loop: ``train(config, workdir, task=None)``.

One loop for every kind of training; what differs goes into a ``Task`` (see
``nas_jax.train.task``): the plain / DBB baselines use ``ClassificationTask`` (built
from the config when ``task`` is None), the RepNAS search and the pruning trainer pass
their own. Per step the host only fetches and shards the next batch and dispatches the
compiled step; metrics stay on the device until a logging point (every ``log_every``
steps), where they are averaged and written. A checkpoint is written every
``checkpoint_every`` steps, at the end, and on SIGTERM (after the current step); a
restarted run resumes from the newest readable checkpoint and sees the same batches and
random numbers as an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nas_jax.common import compiler_options, write_text_atomic
from nas_jax.data import Pipeline, create_pipeline
from nas_jax.distributed import is_primary
from nas_jax.models import MULTI_BRANCH_KINDS, create_model, is_custom
from nas_jax.models.custom import CustomSpec
from nas_jax.models.network import load_network
from nas_jax.rep.from_plain import branches_from_plain
from nas_jax.train.checkpoint import Checkpointer, Restored
from nas_jax.train.config import config_from_json, config_to_json
from nas_jax.train.metrics import RunLogger
from nas_jax.train.optim import create_optimizer
from nas_jax.train.step import (abstract_train_state, create_mesh, create_train_state, eval_step_fn, jit_eval_step,
                                jit_train_step, replicated, shard_batch, train_step_fn)
from nas_jax.train.task import ClassificationTask, Task

CHECKPOINT_DIR = "checkpoints"


def model_from_config(config, num_classes: int):
    """The zoo model of ``config``, or its user model (``package.module:function``,
    called with ``config.model_kwargs``)."""
    extra = {"model_kwargs": dict(config.get("model_kwargs", {}))} if is_custom(config.model) else {}
    return create_model(config.model, block=config.block, num_classes=num_classes, width=config.width,
                        dtype=jnp.dtype(config.dtype), **extra)


def classification_task_from_config(config, num_classes: int) -> ClassificationTask:
    """The supervised task of ``config``: its zoo model from scratch, or, with
    ``config.init_from`` (a network directory: ``nas-jax prune export`` or ``nas-jax import``),
    that network at its per-layer widths, starting from its weights (fine-tuning); with
    ``config.block`` dbb or repnas and a plain network, its layers become multi-branch
    blocks that start computing the same function (``branches_from_plain``)."""
    if not config.init_from:
        return ClassificationTask(model_from_config(config, num_classes), config.label_smoothing)
    spec, model, variables = load_network(config.init_from)
    if spec.num_classes != num_classes:
        raise ValueError(f"{config.init_from} has {spec.num_classes} classes; the dataset has {num_classes}")
    if isinstance(spec, CustomSpec):  # a user model: as it was exported, in its own dtype
        if config.block != "plain":
            raise ValueError(f"{config.init_from} holds user model {spec.target}; block={config.block!r} applies "
                             "to zoo models only")
        return ClassificationTask(model, config.label_smoothing, initial_variables=variables)
    if config.block in MULTI_BRANCH_KINDS and model.block == "plain":  # fine-tune with branches
        model = model.clone(block=config.block)
        variables = branches_from_plain(model, variables, input_shape=(1, spec.image_size, spec.image_size, 3))
    return ClassificationTask(model.clone(dtype=jnp.dtype(config.dtype)), config.label_smoothing,
                              initial_variables=variables)


def pipeline_from_config(config, split: str) -> Pipeline:
    return create_pipeline(config.dataset, split, data_dir=config.data_dir, image_size=config.image_size,
                           num_workers=config.num_workers, augment=config.augment,
                           num_classes=config.num_classes, seed=config.seed)


def example_batch(pipeline: Pipeline, batch_size: int = 1) -> Dict[str, np.ndarray]:
    """Zeros shaped like a batch of ``pipeline``: what ``Task.init`` is traced on."""
    return {"image": np.zeros((batch_size,) + tuple(pipeline.image_shape), np.float32),
            "label": np.zeros((batch_size,), np.int32)}


def total_steps(config, pipeline: Pipeline) -> int:
    if config.num_steps > 0:
        return int(config.num_steps)
    steps = int(math.ceil(config.num_epochs * (pipeline.num_examples // config.batch_size)))
    if steps <= 0:
        raise ValueError(f"num_epochs={config.num_epochs} with batch {config.batch_size} on "
                         f"{pipeline.num_examples} examples gives no steps")
    return steps


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


def train(config: ml_collections.ConfigDict, workdir: str, task: Optional[Task] = None, *,
          until: Optional[int] = None, checkpoint_dir: str = CHECKPOINT_DIR,
          start_from: Optional[Callable[[], Restored]] = None, stop_at_step: Optional[int] = None,
          progress_bar: Optional[bool] = None):
    """Trains (or resumes) the run of ``config`` in ``workdir``; returns the final ``TrainState``.

    A run in segments, each its own task (the RepNAS search, then its fixed sub-network):
    ``until`` ends this segment at that step of the schedule (which still spans the
    config's steps) with a checkpoint; ``checkpoint_dir`` (under ``workdir``) holds the
    segment's checkpoints; ``start_from()`` gives the ``Restored`` step, state and data
    position a segment without checkpoints of its own starts from (default: step 0,
    ``task.init``). ``stop_at_step`` ends the run early as a kill would (after saving a
    checkpoint there if it falls on ``checkpoint_every``); ``progress_bar`` None = a bar on
    a terminal only.
    """
    mesh = create_mesh()
    train_data = pipeline_from_config(config, config.train_split)
    eval_data = pipeline_from_config(config, config.eval_split)
    task = task or classification_task_from_config(config, train_data.num_classes)
    steps = total_steps(config, train_data)
    tx, learning_rate_fn = create_optimizer(config, steps)
    rng = jax.random.PRNGKey(config.seed)
    config_json = config_to_json(config)
    os.makedirs(workdir, exist_ok=True)
    if is_primary():
        write_text_atomic(os.path.join(workdir, "config.json"), config.to_json(indent=2))

    end = min(steps if until is None else until, steps if stop_at_step is None else stop_at_step)
    batches = train_data.train_batches(config.batch_size, config.seed)
    checkpointer = Checkpointer(os.path.join(workdir, checkpoint_dir), config.max_to_keep)
    restored = checkpointer.restore_latest(abstract_train_state(task, tx, example_batch(train_data), mesh))
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
    logger = RunLogger(workdir, steps, start, progress_bar)
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
                logger.write(done, config.eval_split, evaluate(eval_step, state, eval_data,
                                                               config.eval_batch_size, mesh))
            if done % config.checkpoint_every == 0 or done in (until, steps) or terminated:
                checkpointer.save(done, state, batches.get_state(), config_json)
            if terminated:
                break
    checkpointer.wait()
    checkpointer.close()
    logger.close()
    return state


def restore_config(workdir: str) -> ml_collections.ConfigDict:
    """The config of the run in ``workdir`` (its ``config.json``)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{workdir!r} holds no training run (no config.json)")
    with open(path) as f:
        return config_from_json(json.load(f))


def latest_checkpoint(config: ml_collections.ConfigDict, workdir: str, task: Task,
                      checkpoint_dir: str = CHECKPOINT_DIR, train_data: Optional[Pipeline] = None) -> Optional[Restored]:
    """The newest readable checkpoint of ``task``'s run of ``config`` under
    ``workdir/checkpoint_dir``, restored replicated over all devices; None if there is none.
    ``train_data``: the run's training pipeline, when the caller has it already."""
    if train_data is None:
        train_data = pipeline_from_config(config, config.train_split)
    tx, _ = create_optimizer(config, total_steps(config, train_data))
    checkpointer = Checkpointer(os.path.join(workdir, checkpoint_dir), config.max_to_keep)
    restored = checkpointer.restore_latest(abstract_train_state(task, tx, example_batch(train_data), create_mesh()))
    checkpointer.close()
    return restored


def restore_run(workdir: str, make_task: Optional[Callable[[ml_collections.ConfigDict, int], Task]] = None):
    """``(config, task, state, mesh)`` of the newest readable checkpoint of the run in
    ``workdir`` (its config read from ``config.json``); ``make_task(config, num_classes)``
    builds the run's task (default: the ``ClassificationTask`` of ``config``), given the
    number of classes of its training data."""
    config = restore_config(workdir)
    if make_task is None and "repnas" in config:
        raise ValueError(f"{workdir} is a RepNAS run: its trained network is the fixed sub-network of its "
                         "genotype.json, which `nas-jax repnas` already fused into deploy/ and evaluated in "
                         "report.json; `eval` and `fuse` read runs of `nas-jax train`")
    train_data = pipeline_from_config(config, config.train_split)
    task = (make_task or classification_task_from_config)(config, train_data.num_classes)
    restored = latest_checkpoint(config, workdir, task, train_data=train_data)
    if restored is None:
        raise FileNotFoundError(f"no readable checkpoint under {os.path.join(workdir, CHECKPOINT_DIR)!r}")
    return config, task, restored.state, create_mesh()
