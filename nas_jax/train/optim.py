"""The weight optimiser: SGD with momentum or AdamW, warm-up + cosine learning rate,
global-norm gradient clipping, and weight decay on conv / dense kernels only (a
parameter with ``ndim <= 1`` - BatchNorm scale and bias, conv and dense biases - gets
none).

Config keys read: ``optimizer`` ('sgd' | 'adamw'), ``learning_rate``, ``momentum``,
``nesterov``, ``weight_decay``, ``warmup_steps``, ``grad_clip_norm`` (0 = off),
``adam_b1``, ``adam_b2``.
"""
from __future__ import annotations

from typing import Tuple

import jax
import optax

OPTIMIZERS = ("sgd", "adamw")


def learning_rate_schedule(config, total_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    warmup = min(int(config.warmup_steps), total_steps)
    return optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, warmup, max(total_steps, warmup + 1))


def weight_decay_mask(params):
    """True for the leaves that get weight decay: kernels (``ndim > 1``)."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(config, total_steps: int) -> Tuple[optax.GradientTransformation, optax.Schedule]:
    """``(tx, learning_rate_fn)`` for the weights."""
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; choose one of {OPTIMIZERS}")
    schedule = learning_rate_schedule(config, total_steps)
    if config.optimizer == "sgd":
        update = optax.chain(optax.add_decayed_weights(config.weight_decay, mask=weight_decay_mask),
                             optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov))
    else:
        update = optax.adamw(schedule, b1=config.adam_b1, b2=config.adam_b2, weight_decay=config.weight_decay,
                             mask=weight_decay_mask)
    if config.grad_clip_norm > 0:
        update = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), update)
    return update, schedule
