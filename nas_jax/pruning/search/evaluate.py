"""Validation accuracy of many width configurations at once.

For one configuration (``channels`` [num_groups] int): the trained PruningNet generates the
weights, BatchNorm statistics are recalibrated on the calibration batches (the mean over
batches of each batch's mean and biased variance, as ``masked.recalibrate``), and the
masked network is evaluated on the held-out batches. ``CandidateEvaluator`` runs a chunk
of configurations in one compiled call: ``jax.lax.map`` over the chunk, ``vmap_width``
configurations at a time under ``jax.vmap``. The width masks are data, so one compiled
program serves every chunk of every search. A chunk is always padded to ``chunk``
candidates (with copies of its first), so every call has the same shapes and a
candidate's accuracy does not depend on what it was evaluated with.

Why ``vmap_width`` defaults to 1 on the CPU and to the whole chunk elsewhere: every
configuration has its own generated weights, so vmapping over configurations turns each
conv into a grouped conv, which XLA's CPU backend runs slower than the same convs one
after another (``experiments/bench_prune_search_eval.py`` measures both); accelerators
fill their cores with the wider batch instead.

Data layout: ``calibration`` float32 [num_calibration_batches, B, H, W, 3] (training
images); ``holdout`` ``{'image': [num_batches, B, H, W, 3], 'label': int32
[num_batches, B], 'mask': float32 [num_batches, B]}`` (held-out images, never the test
split; ``mask`` is 0 on padding).
"""
from __future__ import annotations

from typing import Dict, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from nas_jax.pruning import masked
from nas_jax.pruning.task import PruningTask
from nas_jax.train.step import compiler_options


def configuration_accuracy(task: PruningTask, params, channels, calibration, holdout) -> jax.Array:
    """Scalar top-1 accuracy of kept ``channels`` [num_groups] (see the module doc)."""
    variables = task.generate(params, channels)
    per_batch = jax.lax.map(
        lambda images: masked.batch_statistics(task.model, task.graph, variables, channels, images), calibration)
    variables = dict(variables, batch_stats=jax.tree.map(lambda s: s.mean(0), per_batch))

    def correct(batch):
        logits = masked.masked_apply(task.model, task.graph, variables, channels, batch["image"], train=False)
        return ((jnp.argmax(logits, -1) == batch["label"]) * batch["mask"]).sum()

    return jax.lax.map(correct, holdout).sum() / holdout["mask"].sum()


def stack_batches(batches: Iterable[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """A list of equally sized batches as one dict of arrays with a leading batch axis."""
    batches = list(batches)
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def default_vmap_width(chunk: int) -> int:
    """1 on the CPU, ``chunk`` on accelerators (see the module doc)."""
    return 1 if jax.default_backend() == "cpu" else chunk


class CandidateEvaluator:
    """``evaluator(channels [K, num_groups]) -> accuracies [K]`` float64, ``chunk``
    configurations per compiled call (``chunk=1``: one call per configuration), of which
    ``vmap_width`` run side by side under ``jax.vmap`` (0: ``default_vmap_width``)."""

    def __init__(self, task: PruningTask, params, calibration: np.ndarray, holdout: Dict[str, np.ndarray],
                 chunk: int = 8, vmap_width: int = 0):
        if chunk < 1 or not 0 <= vmap_width <= chunk:
            raise ValueError(f"need chunk >= 1 and 0 <= vmap_width <= chunk, not chunk={chunk}, "
                             f"vmap_width={vmap_width}")
        self.chunk = chunk
        self.vmap_width = vmap_width or default_vmap_width(chunk)
        self._params = params
        self._calibration = jnp.asarray(calibration)
        self._holdout = {k: jnp.asarray(v) for k, v in holdout.items()}

        def run(p, channels, cal, hold):
            return jax.lax.map(lambda c: configuration_accuracy(task, p, c, cal, hold), channels,
                               batch_size=self.vmap_width)

        self._run = jax.jit(run, compiler_options=compiler_options(True))

    def __call__(self, channels) -> np.ndarray:
        channels = np.asarray(channels, np.int32)
        out = []
        for start in range(0, len(channels), self.chunk):
            part = channels[start:start + self.chunk]
            padded = np.concatenate([part, np.repeat(part[:1], self.chunk - len(part), 0)])
            accuracy = self._run(self._params, padded, self._calibration, self._holdout)
            out.append(np.asarray(accuracy, np.float64)[:len(part)])
        return np.concatenate(out) if out else np.zeros((0,), np.float64)
