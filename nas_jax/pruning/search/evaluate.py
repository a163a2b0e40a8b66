"""Validation accuracy of many width configurations at once.

For one configuration (``channels`` [num_groups] int): the trained PruningNet generates the
weights, BatchNorm statistics are recalibrated on the calibration batches (the mean over
batches of each batch's mean and biased variance, as ``masked.recalibrate``), and the
masked network is evaluated on the held-out batches. ``CandidateEvaluator`` runs a chunk
of configurations in one compiled call, ``vmap_width`` configurations at a time under
``jax.vmap`` (``jax.lax.map`` over the groups; unrolled on the CPU, see the class). The
width masks are data, so one compiled
program serves every chunk of every search. A chunk is always padded to ``chunk``
candidates (with copies of its first), so every call has the same shapes and a
candidate's accuracy does not depend on what it was evaluated with.

Why ``chunk`` and ``vmap_width`` default to 1 on the CPU and to 8 elsewhere: every
configuration has its own generated weights, so vmapping over configurations turns each
conv into a grouped conv, which XLA's CPU backend runs slower than the same convs one
after another, and a chunk brings nothing there (``experiments/bench_prune_search_eval.py``
measures the modes); accelerators fill their cores with the wider batch instead.

Data layout (this process's part of each global batch; the evaluator makes global arrays
of them): ``calibration`` float32 [num_calibration_batches, B, H, W, 3] (training
images); ``holdout`` ``{'image': [num_batches, B, H, W, 3], 'label': int32
[num_batches, B], 'mask': float32 [num_batches, B]}`` (held-out images, never the test
split; ``mask`` is 0 on padding).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from nas_jax.common import compiler_options
from nas_jax.pruning import masked
from nas_jax.pruning.task import PruningTask
from nas_jax.train.step import create_mesh, shard_stacked


def map_batches(f: Callable, xs, unrolled: bool, batch_size: Optional[int] = None):
    """``jax.lax.map(f, xs, batch_size=batch_size)``, or the same as straight-line code when
    ``unrolled`` (see ``CandidateEvaluator``: no loops in programs compiled without the
    CPU's algebraic simplifier): ``f`` on every row, or with ``batch_size``, ``f`` vmapped
    over that many rows at a time."""
    if not unrolled:
        return jax.lax.map(f, xs, batch_size=batch_size)
    count = jax.tree.leaves(xs)[0].shape[0]
    if batch_size is None:
        outs = [f(jax.tree.map(lambda x: x[i], xs)) for i in range(count)]
        return jax.tree.map(lambda *o: jnp.stack(o), *outs)
    outs = [jax.vmap(f)(jax.tree.map(lambda x: x[i:i + batch_size], xs)) for i in range(0, count, batch_size)]
    return jax.tree.map(lambda *o: jnp.concatenate(o), *outs)


def configuration_accuracy(task: PruningTask, params, channels, calibration, holdout,
                           unrolled: bool = False) -> jax.Array:
    """Scalar top-1 accuracy of kept ``channels`` [num_groups] (see the module doc);
    ``unrolled``: the loops over batches as straight-line code."""
    variables = task.generate(params, channels)
    per_batch = map_batches(
        lambda images: masked.batch_statistics(task.model, task.graph, variables, channels, images), calibration,
        unrolled)
    variables = dict(variables, batch_stats=jax.tree.map(lambda s: s.mean(0), per_batch))
    correct = map_batches(lambda batch: masked.accuracy_sums(task.model, task.graph, variables, channels, batch)[0],
                          holdout, unrolled)
    return correct.sum() / holdout["mask"].sum()


def stack_batches(batches: Iterable[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """A list of equally sized batches as one dict of arrays with a leading batch axis."""
    batches = list(batches)
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def default_chunk() -> int:
    """1 on the CPU, 8 on accelerators (see ``CandidateEvaluator``)."""
    return 1 if jax.default_backend() == "cpu" else 8


class CandidateEvaluator:
    """``evaluator(channels [K, num_groups]) -> accuracies [K]`` float64, ``chunk``
    configurations per compiled call (0: ``default_chunk``), of which ``vmap_width`` run
    side by side under ``jax.vmap`` (0: 1 on the CPU, ``chunk`` on accelerators).

    On the CPU the program is compiled without XLA's algebraic simplifier, as the training
    steps are (``nas_jax.common.compiler_options``; twice the speed here), and XLA's
    CPU backend intermittently crashes (segmentation fault) on loops compiled that way, so
    there the loops over batches and over the chunk are unrolled into straight-line code:
    compile time grows with ``chunk``, hence its CPU default of 1."""

    def __init__(self, task: PruningTask, params, calibration: np.ndarray, holdout: Dict[str, np.ndarray],
                 chunk: int = 0, vmap_width: int = 0):
        chunk = chunk or default_chunk()
        if chunk < 1 or not 0 <= vmap_width <= chunk:
            raise ValueError(f"need chunk >= 0 and 0 <= vmap_width <= chunk, not chunk={chunk}, "
                             f"vmap_width={vmap_width}")
        options = compiler_options(True)
        unrolled = options is not None
        self.chunk = chunk
        self.vmap_width = vmap_width or (1 if unrolled else chunk)
        self._params = params
        # global arrays over the mesh: recalibration and accuracy sum over every process's images
        self._calibration, self._holdout = shard_stacked((calibration, holdout), create_mesh())

        def run(p, channels, cal, hold):
            return map_batches(lambda c: configuration_accuracy(task, p, c, cal, hold, unrolled), channels, unrolled,
                               self.vmap_width)

        self._run = jax.jit(run, compiler_options=options)

    def __call__(self, channels) -> np.ndarray:
        channels = np.asarray(channels, np.int32)
        out = []
        for start in range(0, len(channels), self.chunk):
            part = channels[start:start + self.chunk]
            padded = np.concatenate([part, np.repeat(part[:1], self.chunk - len(part), 0)])
            accuracy = self._run(self._params, padded, self._calibration, self._holdout)
            out.append(np.asarray(accuracy, np.float64)[:len(part)])
        return np.concatenate(out) if out else np.zeros((0,), np.float64)
