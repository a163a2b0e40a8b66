"""One job's assembly point: a ``Run`` is a config and a work directory. It builds, once
each, what the commands on them share (the mesh, the pipeline of each split, the
schedule's length and optimizer), makes the config's classification task and reads the
run's checkpoints. ``train`` (the loop), ``eval``, ``fuse``, ``repnas``, ``prune`` and
their restores all take one.

    run = Run(config, "/tmp/run")                 # a new or resumed job
    state = train(run)                            # the config's classification task
    run = Run.restore("/tmp/run")                 # a finished one, from its config.json
    state = run.restored_state(run.classification_task())

``job`` names the command whose run it is (``train``, ``repnas``, ``prune train``); it is
written with the config to ``config.json`` so that a command reading a run made by another
one says so instead of misreading its checkpoints.
"""
from __future__ import annotations

import functools
import json
import math
import os
from typing import Dict, Optional, Tuple

import jax.numpy as jnp
import ml_collections
import numpy as np

from nas_jax.common import write_text_atomic
from nas_jax.data import Pipeline, create_pipeline
from nas_jax.models import MULTI_BRANCH_KINDS, create_model, is_custom
from nas_jax.models.custom import CustomSpec
from nas_jax.models.network import load_network
from nas_jax.rep.from_plain import branches_from_plain
from nas_jax.train.checkpoint import Checkpointer, Restored
from nas_jax.train.config import config_from_json, config_to_json
from nas_jax.train.optim import create_optimizer
from nas_jax.train.step import abstract_train_state, create_mesh
from nas_jax.train.task import ClassificationTask, Task

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"
TRAIN_JOB = "train"


def pipeline_from_config(config, split: str) -> Pipeline:
    """Split ``split`` of the config's dataset (a ``Run`` builds each split once with this)."""
    return create_pipeline(config.dataset, split, data_dir=config.data_dir, image_size=config.image_size,
                           num_workers=config.num_workers, augment=config.augment,
                           num_classes=config.num_classes, seed=config.seed)


def model_from_config(config, num_classes: int):
    """The zoo model of ``config``, or its user model (``package.module:function``,
    called with ``config.model_kwargs``)."""
    extra = ({"model_kwargs": dict(config.get("model_kwargs", {})), "image_size": config.image_size}
             if is_custom(config.model) else {})
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


def example_batch(pipeline: Pipeline, batch_size: int = 1) -> Dict[str, np.ndarray]:
    """Zeros shaped like a batch of ``pipeline``: what ``Task.init`` is traced on."""
    return {"image": np.zeros((batch_size,) + tuple(pipeline.image_shape), np.float32),
            "label": np.zeros((batch_size,), np.int32)}


def total_steps(config, pipeline: Pipeline) -> int:
    """``config.num_steps``, or ``num_epochs`` of ``pipeline`` at the config's batch size."""
    if config.num_steps > 0:
        return int(config.num_steps)
    steps = int(math.ceil(config.num_epochs * (pipeline.num_examples // config.batch_size)))
    if steps <= 0:
        raise ValueError(f"num_epochs={config.num_epochs} with batch {config.batch_size} on "
                         f"{pipeline.num_examples} examples gives no steps")
    return steps


class Run:
    """A job on ``config`` in ``workdir`` (see the module doc); the mesh, pipelines, step
    count and optimizer are built on first use and kept."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str, job: str = TRAIN_JOB):
        self.config, self.workdir, self.job = config, workdir, job
        self._pipelines: Dict[str, Pipeline] = {}

    @classmethod
    def restore(cls, workdir: str) -> "Run":
        """The run in ``workdir``, its config and job read from its ``config.json``."""
        path = os.path.join(workdir, CONFIG_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{workdir!r} holds no training run (no {CONFIG_FILE})")
        with open(path) as f:
            data = json.load(f)
        job = data.pop("job", TRAIN_JOB)
        return cls(config_from_json(data), workdir, job)

    def write_config(self) -> None:
        """``config.json``: the config and the job (process 0 writes it)."""
        os.makedirs(self.workdir, exist_ok=True)
        write_text_atomic(os.path.join(self.workdir, CONFIG_FILE),
                          json.dumps({"job": self.job, **config_to_json(self.config)}, indent=2))

    @functools.cached_property
    def mesh(self):
        return create_mesh()

    def pipeline(self, split: str) -> Pipeline:
        if split not in self._pipelines:
            self._pipelines[split] = pipeline_from_config(self.config, split)
        return self._pipelines[split]

    @property
    def train_data(self) -> Pipeline:
        return self.pipeline(self.config.train_split)

    @property
    def eval_data(self) -> Pipeline:
        return self.pipeline(self.config.eval_split)

    @functools.cached_property
    def steps(self) -> int:
        """The schedule's length (every segment of a job spans it)."""
        return total_steps(self.config, self.train_data)

    @functools.cached_property
    def optimizer(self) -> Tuple:
        """``(tx, learning_rate_fn)`` over the schedule."""
        return create_optimizer(self.config, self.steps)

    def classification_task(self) -> ClassificationTask:
        """The config's supervised task; refused for a run another command made (its
        checkpoints hold that command's task)."""
        if self.job != TRAIN_JOB:
            raise ValueError(f"{self.workdir} holds a `nas-jax {self.job}` run, whose results are in its own "
                             "report.json (and deploy/ where it fuses); `eval` and `fuse` read runs of "
                             "`nas-jax train`")
        return classification_task_from_config(self.config, self.train_data.num_classes)

    def checkpointer(self, checkpoint_dir: str = CHECKPOINT_DIR) -> Checkpointer:
        return Checkpointer(os.path.join(self.workdir, checkpoint_dir), self.config.max_to_keep)

    def abstract_state(self, task: Task):
        """The shapes and shardings of ``task``'s ``TrainState`` (what a checkpoint restores into)."""
        return abstract_train_state(task, self.optimizer[0], example_batch(self.train_data), self.mesh)

    def latest_checkpoint(self, task: Task, checkpoint_dir: str = CHECKPOINT_DIR) -> Optional[Restored]:
        """The newest readable checkpoint of ``task`` under ``workdir/checkpoint_dir``,
        restored replicated over the mesh; None if there is none."""
        checkpointer = self.checkpointer(checkpoint_dir)
        restored = checkpointer.restore_latest(self.abstract_state(task))
        checkpointer.close()
        return restored

    def restored_state(self, task: Task, checkpoint_dir: str = CHECKPOINT_DIR):
        """The ``TrainState`` of the newest readable checkpoint of ``task``; a
        ``FileNotFoundError`` when there is none."""
        restored = self.latest_checkpoint(task, checkpoint_dir)
        if restored is None:
            raise FileNotFoundError(f"no readable checkpoint under {os.path.join(self.workdir, checkpoint_dir)!r}")
        return restored.state
