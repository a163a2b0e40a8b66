"""The RL policy over per-group widths, and its policy-gradient updates.

State: the trained PruningNet's GCN embeddings (``GraphAggregator`` on the full-width
node features) averaged over the layers of each prunable coupled group, standardised per
feature: ``states`` float32 [P, gcn_features]. These are learnt features of the graph,
not hand-made ones as in AMC.

Policy: a small MLP shared by the groups, ``Dense(hidden) -> tanh -> Dense(num_choices)``
on each group's state, giving ``logits`` [P, num_choices]; an action is one grid index
per group, drawn independently ([K, P] for K candidates). The last layer starts at zero,
so the first policy is uniform.

Updates (optax), with advantages ``reward - baseline`` ([K]; the baseline a moving
average of the batch mean reward):

- ``reinforce``: loss ``-mean(advantage * sum_g log p(a_g)) - entropy_bonus * H``.
- ``ppo``: ``ppo_epochs`` steps on the clipped surrogate
  ``-mean(min(r * A, clip(r, 1 - eps, 1 + eps) * A)) - entropy_bonus * H``,
  ``r = exp(log p_new(a) - log p_old(a))``.

``H`` is the mean over groups of each group's categorical entropy.
"""
from __future__ import annotations

import base64
import functools
from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from nas_jax.pruning.pruningnet import GraphAggregator, node_features
from nas_jax.pruning.task import PruningTask
from nas_jax.pruning.widths import full_channels

ALGORITHMS = ("reinforce", "ppo")


def group_states(task: PruningTask, params) -> np.ndarray:
    """[P, gcn_features] float32: GCN embeddings pooled per prunable group, standardised."""
    net = task.net
    aggregator = GraphAggregator(task.graph, net.gcn_features, net.gcn_depth)
    embeddings = np.asarray(aggregator.apply({"params": params["pruningnet"]["aggregator"]},
                                             node_features(task.graph, full_channels(task.graph))))
    pooled = np.stack([embeddings[list(task.graph.groups[g].layers)].mean(0) for g in task.graph.prunable_groups])
    return ((pooled - pooled.mean(0)) / (pooled.std(0) + 1e-6)).astype(np.float32)


class PolicyNet(nn.Module):
    """[P, F] states -> [P, num_choices] logits."""
    num_choices: int
    hidden: int = 64

    @nn.compact
    def __call__(self, states):
        h = nn.tanh(nn.Dense(self.hidden)(states))
        return nn.Dense(self.num_choices, kernel_init=nn.initializers.zeros)(h)


def _log_probs_and_entropy(logits, actions):
    """(sum over groups of log p(a) [K], mean group entropy) for ``actions`` [K, P]."""
    log_p = jax.nn.log_softmax(logits)
    taken = jnp.take_along_axis(log_p[None], actions[..., None], axis=-1)[..., 0].sum(-1)
    entropy = -(jnp.exp(log_p) * log_p).sum(-1).mean()
    return taken, entropy


def _loss(net: PolicyNet, hyper: Tuple[str, float, float], params, states, actions, advantages, old_log_p):
    algorithm, entropy_bonus, clip = hyper
    log_p, entropy = _log_probs_and_entropy(net.apply({"params": params}, states), actions)
    if algorithm == "reinforce":
        objective = (advantages * log_p).mean()
    else:
        ratio = jnp.exp(log_p - old_log_p)
        objective = jnp.minimum(ratio * advantages, jnp.clip(ratio, 1 - clip, 1 + clip) * advantages).mean()
    return -objective - entropy_bonus * entropy


def _update(net: PolicyNet, tx: optax.GradientTransformation, hyper: Tuple[str, float, float], epochs: int,
            params, opt_state, states, actions, advantages):
    """``epochs`` optimiser steps on ``_loss``; old log-probabilities from ``params``."""
    old_log_p, _ = _log_probs_and_entropy(net.apply({"params": params}, states), actions)
    for _ in range(epochs):
        grads = jax.grad(_loss, argnums=2)(net, hyper, params, states, actions, advantages, old_log_p)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    return params, opt_state


class Policy:
    """The policy, its optimiser and baseline. ``state`` (params, opt_state, baseline,
    has_baseline) is a pytree, saved with ``to_text`` / restored with ``from_text``."""

    def __init__(self, states: np.ndarray, num_choices: int, seed: int, hidden: int = 64,
                 learning_rate: float = 0.01, entropy_bonus: float = 0.01, baseline_momentum: float = 0.9,
                 algorithm: str = "reinforce", ppo_epochs: int = 4, ppo_clip: float = 0.2):
        if algorithm not in ALGORITHMS:
            raise ValueError(f"policy algorithm must be one of {ALGORITHMS}, not {algorithm!r}")
        self.states = jnp.asarray(states)
        self.net = PolicyNet(num_choices, hidden)
        self.tx = optax.adam(learning_rate)
        self.momentum = baseline_momentum
        hyper = (algorithm, float(entropy_bonus), float(ppo_clip))
        epochs = 1 if algorithm == "reinforce" else ppo_epochs
        # compiled once per policy (the network, optimiser and settings are closed over)
        self._sample = jax.jit(lambda params, key, count: jax.random.categorical(
            key, self.net.apply({"params": params}, self.states), shape=(count, self.states.shape[0])),
            static_argnums=2)
        self._update = jax.jit(functools.partial(_update, self.net, self.tx, hyper, epochs))
        params = self.net.init(jax.random.key(seed), self.states)["params"]
        self.state = {"params": params, "opt_state": self.tx.init(params),
                      "baseline": np.zeros((), np.float32), "has_baseline": np.zeros((), np.bool_)}

    def sample(self, key: jax.Array, count: int) -> np.ndarray:
        """[count, P] int grid indices."""
        return np.asarray(self._sample(self.state["params"], key, count), np.int64)

    def update(self, actions, rewards) -> None:
        """One policy-gradient update (``ppo_epochs`` for PPO) on ``actions`` [K, P] with
        ``rewards`` [K]."""
        rewards = np.asarray(rewards, np.float32)
        s = self.state
        baseline = s["baseline"] if bool(s["has_baseline"]) else np.float32(rewards.mean())
        params, opt_state = self._update(s["params"], s["opt_state"], self.states, jnp.asarray(actions, jnp.int32),
                                         jnp.asarray(rewards - baseline))
        baseline = self.momentum * baseline + (1 - self.momentum) * rewards.mean()
        self.state = {"params": params, "opt_state": opt_state, "baseline": np.float32(baseline),
                      "has_baseline": np.ones((), np.bool_)}

    def to_text(self) -> str:
        return base64.b64encode(serialization.to_bytes(self.state)).decode("ascii")

    def from_text(self, text: str) -> None:
        self.state = serialization.from_bytes(self.state, base64.b64decode(text))
