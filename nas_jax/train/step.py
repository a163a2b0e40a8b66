"""Compiled train / eval steps, data parallel over a ``jax.sharding.Mesh``.

The mesh has one axis, ``'data'``, over all devices (of all hosts). Batches are sharded
along their leading axis (``NamedSharding(mesh, P('data'))``), the state is replicated;
under SPMD jit BatchNorm's batch statistics are global, so the step computes exactly what
one device would on the whole batch. ``shard_batch`` builds global arrays from each
process's local numpy batch (``jax.make_array_from_process_local_data``), so the same code
runs on one CPU, several GPUs, or many hosts.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nas_jax.common import RUN_ONCE_COMPILER_OPTIONS
from nas_jax.train.state import TrainState
from nas_jax.train.task import Task

DATA_AXIS = "data"

def create_mesh(devices=None) -> Mesh:
    """A 1-D mesh ``('data',)`` over ``devices`` (default: all devices of all processes)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def shard_batch(batch: Dict[str, np.ndarray], mesh: Mesh) -> Dict[str, jax.Array]:
    """Global ``jax.Array``s from this process's slice of the batch, split on ``'data'``."""
    sharding = data_sharding(mesh)
    global_size = len(batch["label"]) * jax.process_count()
    if global_size % mesh.size:
        raise ValueError(f"global batch {global_size} does not split over {mesh.size} devices; "
                         f"use a multiple of {mesh.size}")
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def shard_stacked(tree, mesh: Mesh):
    """Global ``jax.Array``s from this process's stacked batches (every leaf
    ``[num_batches, local batch, ...]``), split on ``'data'`` along axis 1: what a
    computation over many batches at once (a search's held-out set) reads, so that its
    sums and means are over the global batches in a multi-process job."""
    sharding = NamedSharding(mesh, P(None, DATA_AXIS))
    return jax.tree.map(lambda v: jax.make_array_from_process_local_data(sharding, np.asarray(v)), tree)


def _init_fn(task: Task, tx: optax.GradientTransformation, example_batch):
    def init(seed):
        v = task.init(jax.random.key(seed, impl="rbg"), example_batch)
        return TrainState(step=jnp.zeros((), jnp.int32), params=v["params"], batch_stats=v["batch_stats"],
                          opt_state=tx.init(v["params"]), extra=v["extra"])
    return init


def create_train_state(task: Task, tx: optax.GradientTransformation, seed: int, example_batch,
                       mesh: Mesh) -> TrainState:
    """A fresh state, initialised by ``task.init`` (with an ``rbg`` key from ``seed``) and
    replicated over ``mesh``."""
    seed = jnp.asarray(seed, jnp.uint32)
    init = jax.jit(_init_fn(task, tx, example_batch), out_shardings=replicated(mesh))
    return init.lower(seed).compile(compiler_options=RUN_ONCE_COMPILER_OPTIONS)(seed)


def abstract_train_state(task: Task, tx: optax.GradientTransformation, example_batch, mesh: Mesh):
    """Shapes, dtypes and shardings of ``create_train_state``'s result, computed without
    running it (what a checkpoint restore needs)."""
    shapes = jax.eval_shape(_init_fn(task, tx, example_batch), jnp.uint32(0))
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated(mesh)), shapes)


def train_step_fn(task: Task, tx: optax.GradientTransformation,
                  learning_rate_fn: Optional[optax.Schedule] = None) -> Callable:
    """The pure step ``(state, batch, rng) -> (state, metrics)``; the step's randomness is
    ``fold_in(rng, state.step)``, so a resumed run draws the same numbers."""
    argnums = (0, 1) if task.trains_extra else 0

    def step(state: TrainState, batch, rng):
        rng = jax.random.fold_in(rng, state.step)
        loss_of = lambda p, e: task.loss(p, e, state.batch_stats, batch, rng, True)  # noqa: E731
        (loss, (logits, batch_stats, aux)), grads = jax.value_and_grad(
            loss_of, argnums=argnums, has_aux=True, allow_int=True)(state.params, state.extra)
        param_grads, extra_grads = grads if task.trains_extra else (grads, None)
        updates, opt_state = tx.update(param_grads, state.opt_state, state.params)
        extra = task.update_extra(state.extra, extra_grads, state.step, rng) if task.trains_extra else state.extra
        metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
                   "grad_norm": optax.tree.norm(param_grads), **aux}
        if learning_rate_fn is not None:
            metrics["learning_rate"] = learning_rate_fn(state.step)
        new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                                  batch_stats=batch_stats, opt_state=opt_state, extra=extra)
        return new_state, metrics

    return step


def eval_step_fn(task: Task) -> Callable:
    """``(state, batch) -> {'loss_sum', 'correct', 'count'}`` over the real (mask 1) examples."""
    def step(state: TrainState, batch):
        mask = batch["mask"]
        loss, (logits, _, _) = task.loss(state.params, state.extra, state.batch_stats, batch, None, False)
        count = mask.sum()
        return {"loss_sum": loss * count, "correct": ((jnp.argmax(logits, -1) == batch["label"]) * mask).sum(),
                "count": count}
    return step


def jit_train_step(step: Callable, mesh: Mesh, options: Optional[dict] = None) -> Callable:
    """``step`` compiled over ``mesh``: state replicated and donated, batch sharded;
    ``options``: XLA compiler options (see ``compiler_options``)."""
    rep = replicated(mesh)
    return jax.jit(step, in_shardings=(rep, data_sharding(mesh), rep), out_shardings=(rep, rep),
                   donate_argnums=0, compiler_options=options)


def jit_eval_step(step: Callable, mesh: Mesh, options: Optional[dict] = None) -> Callable:
    rep = replicated(mesh)
    return jax.jit(step, in_shardings=(rep, data_sharding(mesh)), out_shardings=rep, compiler_options=options)
