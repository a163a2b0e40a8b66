"""What a training run optimises: the ``Task`` the loop is parameterised by.

A task owns the model and the loss; the loop owns everything else (data, sharding,
optimiser, checkpoints, logging). The RepNAS search and the pruning trainer are tasks:

* ``init(rng, batch) -> {'params', 'batch_stats', 'extra'}``: fresh variables; ``batch``
  is an example batch (shapes only matter). ``extra`` is the task's own pytree (``{}``
  if none), carried in ``TrainState.extra`` and checkpointed with it.
* ``loss(params, extra, batch_stats, batch, rng, train) -> (loss, (logits, new_batch_stats,
  aux))``: a pure, jit-able scalar loss; ``logits`` float32 ``[B, classes]`` (for the
  accuracy metric), ``aux`` a dict of scalar metrics to log. With ``train=False`` the
  batch may hold ``'mask' [B]`` and the loss must be the mask-weighted mean.
* ``trains_extra`` (bool): when true the step also differentiates the loss with respect
  to ``extra`` (integer leaves get ``float0`` gradients) and calls
  ``update_extra(extra, extra_grads, step, rng) -> extra`` inside the compiled step, after
  the weight update, with the ``rng`` the loss saw (e.g. an Adam step on the alphas, and
  the step's sampled mask drawn again from the same key).
* ``on_log(state, step, metrics) -> None``: host side, at logging points, with the
  averaged metrics as floats.

A task is stateless: its static structure is fixed when it is built, so the loop
compiles one step. A run whose structure changes part way (the RepNAS fixed phase) is
two runs of the loop, the second starting from the first's last state (``train(...,
until=, start_from=)``).

``Task`` below gives the optional parts their defaults; ``ClassificationTask`` is the
plain supervised task (any zoo model, cross-entropy with label smoothing).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


class Task:
    trains_extra: bool = False

    def init(self, rng, batch) -> Dict[str, Any]:
        raise NotImplementedError

    def loss(self, params, extra, batch_stats, batch, rng, train: bool):
        raise NotImplementedError

    def update_extra(self, extra, extra_grads, step, rng):
        return extra

    def on_log(self, state, step: int, metrics: Dict[str, float]) -> None:
        return None


def cross_entropy(logits, labels, label_smoothing: float = 0.0, mask: Optional[jax.Array] = None):
    """Mean (mask-weighted if ``mask``) softmax cross-entropy of float32 ``logits [B, K]``
    against int ``labels [B]``, the targets smoothed by ``label_smoothing``."""
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    losses = optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)
    if mask is None:
        return losses.mean()
    return (losses * mask).sum() / jnp.maximum(mask.sum(), 1.0)


class ClassificationTask(Task):
    """Supervised image classification with a Flax model ``model.apply(v, x, train=)``."""

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0, initial_variables=None):
        """``initial_variables`` ({'params', 'batch_stats'}) start the run instead of a
        random init, e.g. an exported pruned network to fine-tune."""
        self.model, self.label_smoothing = model, label_smoothing
        self.initial_variables = initial_variables

    def init(self, rng, batch):
        if self.initial_variables is not None:
            variables = self.initial_variables
            expected = jax.eval_shape(lambda r, x: self.model.init(r, x, train=False), rng, batch["image"])
            got = jax.tree.map(lambda a: tuple(a.shape), variables)
            if jax.tree.map(lambda a: tuple(a.shape), expected) != got:
                raise ValueError("initial variables do not fit the model: their shapes differ from the "
                                 "model's; were they written for another model or widths?")
        else:
            variables = self.model.init({"params": rng}, batch["image"], train=False)
        return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {}), "extra": {}}

    def loss(self, params, extra, batch_stats, batch, rng, train):
        variables = {"params": params, "batch_stats": batch_stats}
        if train:
            logits, updates = self.model.apply(variables, batch["image"], train=True, mutable=["batch_stats"],
                                               rngs={"dropout": rng})
            batch_stats = updates["batch_stats"]
        else:
            logits = self.model.apply(variables, batch["image"], train=False)
        smoothing = self.label_smoothing if train else 0.0
        return cross_entropy(logits, batch["label"], smoothing, batch.get("mask")), (logits, batch_stats, {})
