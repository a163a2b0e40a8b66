"""The RepNAS one-stage search as a ``Task`` of the shared training loop.

Phases, in steps of the one loop (one weight optimiser, one cosine schedule):

1. ``[0, random_steps)``: random masks, the top-k of pure noise (alphas stay at 0);
2. ``[random_steps, fix_step)``: the alphas are trained (their own optimiser, run inside
   the compiled step after the weight update);
3. ``[fix_step, total)``: at ``fix_step`` the mask is fixed (noise-free top-k of the
   alphas) and every BatchNorm's running statistics are reset (mean 0, var 1); the
   fixed sub-network then trains with a static ``branch_mask`` (masked branches are not
   in the program at all).

The task's own state, ``TrainState.extra`` (checkpointed with the rest):

* ``alphas`` f32 ``[L, 6]`` and ``alpha_opt`` (their optimiser's state);
* ``kept_steps`` f32 ``[L, 6]``: in how many phase-2 steps each branch was kept, and
  ``search_steps`` f32 ``[]`` the number of those steps (the mask-frequency heatmap);
* ``mask_trace`` f32 ``[S, L, 6]``: how the noise-free mask (top-k of the alphas) changed
  over phase 2, in ``S = min(MASK_TRACE_SNAPSHOTS, search_steps)`` evenly spaced
  snapshots (snapshot ``s`` is the mask after the last search step of the ``s``-th of
  ``S`` equal parts of the phase);
* ``fixed_mask`` int32 ``[L, 6]`` and ``is_fixed`` int32 ``[]``: the fixed mask once phase 3
  has begun (a resumed run reads it back from here);
* ``mask_probe`` f32 ``[L, 6]``, always zero: the loss adds ``sum(mask * mask_probe)``
  (value 0), so the gradient the loop hands to ``update_extra`` for it is exactly the
  step's sampled mask, which is how ``kept_steps`` counts it inside the compiled step.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nas_jax.repnas.searchable import SearchableLayer, branch_weights_collection, static_branch_mask
from nas_jax.repnas.masks import BranchBudget, gumbel_rank, kept_mask, straight_through
from nas_jax.train.task import Task, cross_entropy

BRANCH_COMPUTE = ("cond", "dense")
MASK_TRACE_SNAPSHOTS = 64


@dataclasses.dataclass(frozen=True)
class SearchSchedule:
    """Phase boundaries in steps: ``random_steps`` of random masks, then ``search_steps``
    of alpha training, then the fixed sub-network until ``total_steps``."""
    random_steps: int
    search_steps: int
    total_steps: int

    def __post_init__(self):
        if self.random_steps < 0 or self.search_steps < 0:
            raise ValueError(f"phase lengths must be >= 0, got random {self.random_steps}, search {self.search_steps}")
        if self.fix_step >= self.total_steps:
            raise ValueError(f"the mask is fixed at step {self.fix_step} (random {self.random_steps} + search "
                             f"{self.search_steps}) but the run has only {self.total_steps} steps: the fixed "
                             f"sub-network needs at least one step")

    @property
    def fix_step(self) -> int:
        return self.random_steps + self.search_steps

    @property
    def trace_snapshots(self) -> int:
        """S, the number of mask snapshots over phase 2 (see ``RepNASTask``)."""
        return max(1, min(MASK_TRACE_SNAPSHOTS, self.search_steps))

    def trace_slot(self, step):
        """The snapshot a phase-2 ``step`` (traced or int) writes."""
        return (step - self.random_steps) * self.trace_snapshots // max(self.search_steps, 1)

    def phase(self, step: int) -> str:
        if step < self.random_steps:
            return "random"
        return "search" if step < self.fix_step else "fixed"


def alpha_optimizer(learning_rate: float = 1e-4, b1: float = 0.5, b2: float = 0.999,
                    weight_decay: float = 5e-4) -> optax.GradientTransformation:
    """Adam with L2 weight decay added to the gradient (PyTorch ``Adam(weight_decay=)``)."""
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate, b1, b2))


def reset_batch_stats(batch_stats):
    """Every BatchNorm's running mean set to 0 and variance to 1."""
    def reset(path, x):
        return jnp.ones_like(x) if getattr(path[-1], "key", None) == "var" else jnp.zeros_like(x)
    return jax.tree_util.tree_map_with_path(reset, batch_stats)


class RepNASTask(Task):
    """``model``: a zoo model with ``block='repnas'``; ``layers``: its searchable layers
    (``find_searchable_layers``), whose order is the alphas' row order.

    ``branch_compute``: ``'cond'`` runs each branch under ``nn.cond`` on its mask entry
    (masked branches are not computed); ``'dense'`` computes all six and scales the
    masked ones by 0 (the reference the step time is measured against).
    """

    def __init__(self, model: nn.Module, layers: Sequence[SearchableLayer], budget: BranchBudget,
                 schedule: SearchSchedule, alpha_tx: optax.GradientTransformation,
                 branch_compute: str = "cond", label_smoothing: float = 0.0):
        if branch_compute not in BRANCH_COMPUTE:
            raise ValueError(f"unknown branch_compute {branch_compute!r}; choose one of {BRANCH_COMPUTE}")
        if budget.num_layers != len(layers):
            raise ValueError(f"budget for {budget.num_layers} layers, model has {len(layers)}")
        self.model, self.layers, self.budget, self.schedule = model, tuple(layers), budget, schedule
        self.alpha_tx, self.branch_compute, self.label_smoothing = alpha_tx, branch_compute, label_smoothing
        self.paths = tuple(layer.path for layer in self.layers)
        self._identity = np.array([layer.has_identity for layer in self.layers])
        self.fixed_mask: Optional[np.ndarray] = None  # bool [L, 6] once in phase 3

    # -- what the loop reads ------------------------------------------------------------
    @property
    def trains_extra(self) -> bool:
        return self.fixed_mask is None

    @property
    def compile_key(self):
        return None if self.fixed_mask is None else ("fixed", self.fixed_mask.tobytes())

    def fixed_model(self, mask=None) -> nn.Module:
        """The model with a static ``branch_mask`` (default: the fixed mask)."""
        mask = self.fixed_mask if mask is None else mask
        return self.model.clone(branch_mask=static_branch_mask(self.paths, mask))

    def init(self, rng, batch):
        variables = self.model.init({"params": rng}, batch["image"], train=False)
        shape = (len(self.layers), self.budget.total_branches // len(self.layers))
        alphas = jnp.zeros(shape, jnp.float32)
        extra = {"alphas": alphas, "alpha_opt": self.alpha_tx.init(alphas),
                 "kept_steps": jnp.zeros(shape, jnp.float32), "search_steps": jnp.zeros((), jnp.float32),
                 "mask_trace": jnp.zeros((self.schedule.trace_snapshots, *shape), jnp.float32),
                 "fixed_mask": jnp.zeros(shape, jnp.int32), "is_fixed": jnp.zeros((), jnp.int32),
                 "mask_probe": jnp.zeros(shape, jnp.float32)}
        return {"params": variables["params"], "batch_stats": variables["batch_stats"], "extra": extra}

    # -- masks ----------------------------------------------------------------------------
    def sample(self, alphas, rng):
        """``(mask, weights)`` ``[L, 6]`` of one training step: Gumbel top-k, straight-through."""
        rank = gumbel_rank(alphas, rng)
        mask = kept_mask(rank, self.budget)
        return mask, straight_through(rank, mask)

    def eval_mask(self, extra):
        """The noise-free mask: the fixed one in phase 3, else the top-k of the alphas."""
        return jnp.where(extra["is_fixed"] > 0, extra["fixed_mask"].astype(jnp.float32),
                         kept_mask(extra["alphas"], self.budget))

    def _branch_weights(self, mask, weights):
        """The ``branch_weights`` collection for ``branch_compute``. Dense: masked branches
        weighted 0, and an empty layer without identity gets its conv3x3 at weight 1 (the
        fallback the cond path and a static mask take)."""
        if self.branch_compute == "cond":
            return branch_weights_collection(self.paths, weights, mask)
        fallback = (mask.sum(axis=1) == 0) & ~jnp.asarray(self._identity)
        dense = jnp.where(mask > 0, weights, 0.0).at[:, 2].add(fallback.astype(weights.dtype))
        return branch_weights_collection(self.paths, dense)

    # -- the loss -------------------------------------------------------------------------
    def loss(self, params, extra, batch_stats, batch, rng, train):
        """Phases 1-2: the supernet with this step's sampled mask (training) or the
        noise-free mask (evaluation); phase 3: the fixed sub-network, static mask."""
        model, mask, collections = self.model, None, {}
        if self.fixed_mask is not None:
            model = self.fixed_model()
        elif train:
            mask, weights = self.sample(extra["alphas"], rng)
            collections = {"branch_weights": self._branch_weights(mask, weights)}
        else:
            noise_free = self.eval_mask(extra)
            collections = {"branch_weights": self._branch_weights(noise_free, noise_free)}
        variables = {"params": params, "batch_stats": batch_stats, **collections}
        if not train:
            logits = model.apply(variables, batch["image"], train=False)
            return cross_entropy(logits, batch["label"], 0.0, batch.get("mask")), (logits, batch_stats, {})
        logits, updates = model.apply(variables, batch["image"], train=True, mutable=["batch_stats"])
        loss = cross_entropy(logits, batch["label"], self.label_smoothing)
        if mask is None:
            return loss, (logits, updates["batch_stats"], {})
        probe = jnp.sum(jax.lax.stop_gradient(mask) * extra["mask_probe"])
        return loss + probe, (logits, updates["batch_stats"], {"kept_branches": mask.sum()})

    def update_extra(self, extra, extra_grads, step):
        """Phase 1: alphas unchanged; phase 2: one alpha optimiser step, the step's mask
        (the ``mask_probe`` gradient) counted into ``kept_steps`` and the new noise-free
        mask written to its ``mask_trace`` snapshot."""
        searching = step >= self.schedule.random_steps
        updates, alpha_opt = self.alpha_tx.update(extra_grads["alphas"], extra["alpha_opt"], extra["alphas"])
        keep_old = lambda new, old: jnp.where(searching, new, old)  # noqa: E731
        alphas = keep_old(optax.apply_updates(extra["alphas"], updates), extra["alphas"])
        slot = jnp.clip(self.schedule.trace_slot(step), 0, self.schedule.trace_snapshots - 1)
        trace = extra["mask_trace"].at[slot].set(kept_mask(alphas, self.budget))
        return {**extra, "alphas": alphas, "mask_trace": keep_old(trace, extra["mask_trace"]),
                "alpha_opt": jax.tree.map(keep_old, alpha_opt, extra["alpha_opt"]),
                "kept_steps": extra["kept_steps"] + searching * extra_grads["mask_probe"],
                "search_steps": extra["search_steps"] + searching}

    # -- phases ---------------------------------------------------------------------------
    def on_step(self, state, step: int):
        """At ``fix_step``: fix the mask, reset BN statistics. After it, in a resumed run:
        adopt the fixed mask stored in the state (once; no device sync on other steps)."""
        if step < self.schedule.fix_step:
            self.fixed_mask = None
            return None
        if step == self.schedule.fix_step:
            state = jax.jit(self._fix)(state)
            self.adopt(state)
            return state
        if self.fixed_mask is None:
            self.adopt(state)
        return None

    def _fix(self, state):
        """The state with the noise-free top-k of its alphas fixed and every BatchNorm's
        statistics reset."""
        mask = kept_mask(state.extra["alphas"], self.budget).astype(jnp.int32)
        extra = {**state.extra, "fixed_mask": mask, "is_fixed": jnp.ones((), jnp.int32)}
        return state.replace(batch_stats=reset_batch_stats(state.batch_stats), extra=extra)

    def adopt(self, state) -> None:
        """Takes the fixed mask from a phase-3 state (e.g. a restored checkpoint)."""
        if int(jax.device_get(state.extra["is_fixed"])) == 0:
            raise ValueError(f"state at step {int(jax.device_get(state.step))} is past the fixing point "
                             f"{self.schedule.fix_step} but holds no fixed mask")
        self.fixed_mask = np.asarray(jax.device_get(state.extra["fixed_mask"])) > 0

