"""Throughput of a zoo model's train step or inference on synthetic data, on all devices.

``benchmark(mode, model, block, batch, res, steps, dtype)`` -> a dict with
``images_per_s`` (timed steps only), ``compile_s`` (lowering + XLA compilation of the
step), ``peak_mem_mb`` (the devices' ``peak_bytes_in_use`` where ``memory_stats`` has it,
else the process's max RSS), ``temp_mb`` (XLA's temporary buffers of the compiled program
per device: what the step keeps for its backward pass plus workspace, known before it runs
and the same on every backend that reports it) and the settings. The train step is the loop's own
(``nas_jax.train.step``: SGD, sharded batch, donated state); inference is
``model.apply(v, x, train=False)``. ``block='deploy'`` builds the deploy network directly
(the same shapes ``fuse_params`` gives for every trainable kind). ``cpu_skip_algsimp``:
see ``nas_jax.common.compiler_options``.
"""
from __future__ import annotations

import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from nas_jax.common import compiler_options
from nas_jax.models import create_model
from nas_jax.train.config import default_config
from nas_jax.train.optim import create_optimizer
from nas_jax.train.step import (create_mesh, create_train_state, jit_train_step, replicated, shard_batch,
                                train_step_fn)
from nas_jax.train.task import ClassificationTask

MODES = ("train", "infer")
DTYPES = ("float32", "bfloat16")


def peak_memory_mb():
    """``(megabytes, source)``: summed device peak where reported, else process max RSS."""
    peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in jax.local_devices()]
    if all(p is not None for p in peaks):
        return sum(peaks) / 2**20, "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "host_max_rss"


def compiled_temp_mb(compiled) -> float | None:
    """Megabytes of temporary buffers XLA allocates per device for ``compiled`` (a
    ``jax.stages.Compiled``), or None where the backend gives no memory analysis."""
    stats = compiled.memory_analysis()
    return None if stats is None else stats.temp_size_in_bytes / 2**20


def synthetic_setup(task, batch: int, res: int, num_classes: int, mesh):
    """``(data, tx, state)`` for timing ``task``: a random batch of ``batch`` [res, res, 3]
    images and labels below ``num_classes`` sharded over ``mesh``, the loop's default SGD
    and a fresh replicated state."""
    rng = np.random.default_rng(0)
    host = {"image": rng.standard_normal((batch, res, res, 3), dtype=np.float32),
            "label": rng.integers(0, num_classes, batch).astype(np.int32)}
    tx, _ = create_optimizer(default_config(), 1000)
    state = create_train_state(task, tx, 0, {k: v[:1] for k, v in host.items()}, mesh)
    return shard_batch(host, mesh), tx, state


def measure_train_step(task, batch: int, res: int, num_classes: int, steps: int, options: dict | None) -> dict:
    """Compile the loop's train step for ``task`` (``nas_jax.train.step``) over all devices
    on a ``synthetic_setup`` batch and time ``steps`` calls after one warm-up:
    ``images_per_s``, ``step_ms``, ``compile_s``, ``temp_mb``."""
    mesh = create_mesh()
    data, tx, state = synthetic_setup(task, batch, res, num_classes, mesh)
    key = jax.random.PRNGKey(0)
    start = time.perf_counter()
    step = jit_train_step(train_step_fn(task, tx), mesh, options).lower(state, data, key).compile()
    compile_s = time.perf_counter() - start
    seconds = _time(lambda s: step(s, data, key)[0], state, steps)
    return _figures(batch, steps, seconds, compile_s, step)


def _figures(batch: int, steps: int, seconds: float, compile_s: float, compiled) -> dict:
    return {"images_per_s": batch * steps / seconds, "step_ms": 1000 * seconds / steps, "compile_s": compile_s,
            "temp_mb": compiled_temp_mb(compiled)}


def _time(run, state, steps: int):
    """Seconds for ``steps`` calls of ``state = run(state)`` after one warm-up call."""
    state = jax.block_until_ready(run(state))
    start = time.perf_counter()
    for _ in range(steps):
        state = run(state)
    jax.block_until_ready(state)
    return time.perf_counter() - start


def benchmark(mode: str, model: str, block: str = "plain", batch: int = 32, res: int = 224, steps: int = 10,
              dtype: str = "float32", num_classes: int = 1000, width: float = 1.0,
              cpu_skip_algsimp: bool = True) -> dict:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    if steps < 1 or batch < 1 or res < 32:
        raise ValueError("need steps >= 1, batch >= 1 and res >= 32")
    mesh = create_mesh()
    net = create_model(model, block=block, num_classes=num_classes, width=width, dtype=jnp.dtype(dtype))
    task = ClassificationTask(net)
    options = compiler_options(cpu_skip_algsimp)
    if mode == "train":
        figures = measure_train_step(task, batch, res, num_classes, steps, options)
    else:
        data, _, state = synthetic_setup(task, batch, res, num_classes, mesh)
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        start = time.perf_counter()
        forward = jax.jit(lambda v, x: net.apply(v, x, train=False), out_shardings=replicated(mesh),
                          compiler_options=options)
        forward = forward.lower(variables, data["image"]).compile()
        compile_s = time.perf_counter() - start
        seconds = _time(lambda logits: forward(variables, data["image"]), None, steps)
        figures = _figures(batch, steps, seconds, compile_s, forward)
    peak, source = peak_memory_mb()
    return {"mode": mode, "model": model, "block": block, "batch": batch, "res": res, "steps": steps,
            "dtype": dtype, "width": width, "devices": mesh.size, "device_kind": jax.devices()[0].device_kind,
            "cpu_skip_algsimp": options is not None, **figures, "peak_mem_mb": peak, "peak_mem_source": source}
