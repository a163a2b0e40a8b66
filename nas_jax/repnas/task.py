"""The RepNAS search as a ``Task`` of the shared training loop.

Phases, in steps of one loop run (one weight optimiser, one cosine schedule that spans
the whole job):

1. ``[0, random_steps)``: random masks, the top-k of pure noise (alphas stay at 0);
2. ``[random_steps, fix_step)``: the alphas are trained (their own optimiser, run inside
   the compiled step after the weight update).

The third phase, ``[fix_step, total)``, is not this task: the mask is fixed (the
noise-free top-k of the alphas, ``fixed_mask``) and the fixed sub-network (``fixed_model``,
a static ``branch_mask``: masked branches are not in the program at all) trains as a
second run of the loop, from this run's last state with every BatchNorm's running
statistics reset (mean 0, var 1); see ``nas_jax.repnas.run``.

The task's own state, ``TrainState.extra`` (checkpointed with the rest):

* ``alphas`` f32 ``[L, 6]`` and ``alpha_opt`` (their optimiser's state);
* ``kept_steps`` f32 ``[L, 6]``: in how many phase-2 steps each branch was kept, and
  ``search_steps`` f32 ``[]`` the number of those steps (the mask-frequency heatmap);
* ``mask_trace`` f32 ``[S, L, 6]``: how the noise-free mask (top-k of the alphas) changed
  over phase 2, in ``S = min(MASK_TRACE_SNAPSHOTS, search_steps)`` evenly spaced
  snapshots (snapshot ``s`` is the mask after the last search step of the ``s``-th of
  ``S`` equal parts of the phase);
* ``noise`` f32 ``[L, 6]``: the slowly refreshed Gumbel noise ``g1 - g2`` (unused
  with a noise lifetime of 1);
* ``alpha_grad_sum``, ``alpha_grad_sq_sum`` f32 ``[L, 6]``: the sum and the sum of squares
  of each alpha's loss gradient over the phase-2 steps that kept its branch (a masked
  branch is not computed, so its alpha gets no gradient): ``alpha_gradient_t`` turns them
  into a t statistic, whether the gradient that trains an alpha has a sign at all.

Three settings make the supernet learn (``SearchStability``; measured in the README, the
paper's behaviour is ``SearchStability.paper()``):

* ``noise_lifetime``: the mean lifetime, in steps, of each branch's Gumbel noise: every
  step each entry is drawn anew with probability ``1 / noise_lifetime`` (paper: 1, all
  noise new every step; each entry's noise is still exactly ``g1 - g2``). A whole new mask
  every step, keeping about two of six branch kinds per layer, makes the network a
  different function each step: a ResNet-18 supernet on digits stays near chance for the
  whole search. A whole new mask every N steps loses at each change what the last mask
  learnt; a few branches changing a step does not;
* ``noise_final``: the Gumbel noise scale falls linearly from 1 at the start of phase 2 to
  this at the fix step (paper: 1), so the masks settle on the alphas' top-k before it is
  fixed;
* ``branch_scale_init``: in layers with an identity branch, every primitive's output scale
  (its last BatchNorm's gamma; the online block's scale vector) starts at this (paper: 1;
  default: 0 for the exact block, 1 for the online one). 0 starts those layers as their
  identity branch, whatever the mask, the branches growing in from there. Layers without
  identity keep 1: silenced, their output would be exactly 0 and the ReLU after it would
  never pass them a gradient.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nas_jax.rep.kinds import block_kind
from nas_jax.repnas.searchable import (SearchableLayer, branch_weights_collection, scale_primitive_outputs,
                                      static_branch_mask)
from nas_jax.repnas.masks import BranchBudget, gumbel_rank, kept_mask, straight_through
from nas_jax.train.task import Task, cross_entropy

BRANCH_COMPUTE = ("auto", "cond", "dense")


def resolve_branch_compute(branch_compute: str, online: bool = False) -> str:
    """``'auto'``: ``'dense'`` on the CPU (there the search step computing all six branches is
    3.45x faster than skipping the masked ones, ``experiments/bench_repnas_step.py``),
    ``'cond'`` on accelerators (unmeasured; skipping saves the masked branches' FLOPs).
    ``online`` (a ``block='repnas_online'`` supernet): always ``'dense'``, the mask is a
    kernel-level select there and no branch runs on its own."""
    if branch_compute not in BRANCH_COMPUTE:
        raise ValueError(f"unknown branch_compute {branch_compute!r}; choose one of {BRANCH_COMPUTE}")
    if online and branch_compute == "cond":
        raise ValueError("branch_compute='cond' skips branches run one by one; an online supernet "
                         "(block='repnas_online') runs one collapsed conv per layer: use 'auto' or 'dense'")
    if online:
        return "dense"
    if branch_compute == "auto":
        return "dense" if jax.default_backend() == "cpu" else "cond"
    return branch_compute


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


@dataclasses.dataclass(frozen=True)
class SearchStability:
    """How the search phases sample masks and how the branches start; see the module doc.
    The defaults are nas_jax's; ``paper()`` is the official code's behaviour."""
    noise_lifetime: int = 48
    noise_final: float = 0.05
    branch_scale_init: Optional[float] = None

    def __post_init__(self):
        if self.noise_lifetime < 1:
            raise ValueError(f"noise_lifetime must be >= 1 step (1: a new mask every step), "
                             f"got {self.noise_lifetime}")
        if not 0.0 <= self.noise_final <= 1.0:
            raise ValueError(f"noise_final must be in [0, 1] (1: no annealing), got {self.noise_final}")
        if self.branch_scale_init is not None and self.branch_scale_init < 0.0:
            raise ValueError(f"branch_scale_init must be >= 0 (or None: by block), got {self.branch_scale_init}")

    def scale_init(self, online: bool) -> float:
        """``branch_scale_init``, or by block when None: 0 for the exact block (each
        primitive ends in its own BatchNorm, whose gamma can start at 0), 1 for the online
        block (one BatchNorm after the collapsed conv: a layer without identity would feed
        it a constant, whose normalisation has no useful gradient)."""
        if self.branch_scale_init is not None:
            return self.branch_scale_init
        return 1.0 if online else 0.0

    @classmethod
    def paper(cls) -> "SearchStability":
        return cls(noise_lifetime=1, noise_final=1.0, branch_scale_init=1.0)


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
    """``model``: a zoo model with ``block='repnas'`` (or ``'repnas_online'``); ``layers``: its
    searchable layers (``find_searchable_layers``), whose order is the alphas' row order.

    ``branch_compute``: ``'cond'`` runs each branch under ``nn.cond`` on its mask entry
    (masked branches are not computed); ``'dense'`` computes all six and scales the
    masked ones by 0; ``'auto'`` picks per backend and block (``resolve_branch_compute``).
    """
    trains_extra = True

    def __init__(self, model: nn.Module, layers: Sequence[SearchableLayer], budget: BranchBudget,
                 schedule: SearchSchedule, alpha_tx: optax.GradientTransformation,
                 branch_compute: str = "auto", label_smoothing: float = 0.0,
                 stability: SearchStability = SearchStability()):
        block = getattr(model, "block", None)
        self.online = isinstance(block, str) and block_kind(block).online
        branch_compute = resolve_branch_compute(branch_compute, self.online)
        if budget.num_layers != len(layers):
            raise ValueError(f"budget for {budget.num_layers} layers, model has {len(layers)}")
        self.model, self.layers, self.budget, self.schedule = model, tuple(layers), budget, schedule
        self.alpha_tx, self.branch_compute, self.label_smoothing = alpha_tx, branch_compute, label_smoothing
        self.stability = stability
        self.paths = tuple(layer.path for layer in self.layers)
        self._identity = np.array([layer.has_identity for layer in self.layers])

    def fixed_mask(self, extra) -> np.ndarray:
        """The bool ``[L, 6]`` mask phase 3 fixes: the noise-free top-k of ``extra``'s alphas."""
        return np.asarray(jax.device_get(kept_mask(extra["alphas"], self.budget))) > 0

    def random_mask(self, seed: int) -> np.ndarray:
        """A bool ``[L, 6]`` mask drawn at random under the same budget (the top-k of pure
        Gumbel noise): the baseline a searched mask must beat."""
        noise = gumbel_rank(jnp.zeros((len(self.layers), self.budget.total_branches // len(self.layers))),
                            jax.random.fold_in(jax.random.key(seed), 0x5EED))
        return np.asarray(jax.device_get(kept_mask(noise, self.budget))) > 0

    def random_masks(self, seed: int, count: int) -> np.ndarray:
        """``count`` bool ``[L, 6]`` masks drawn at random under the budget from ``seed``
        (the one-shot selection's candidates; another stream than ``random_mask``'s)."""
        shape = (len(self.layers), self.budget.total_branches // len(self.layers))
        keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 0x0E5), count)
        draw = jax.vmap(lambda key: kept_mask(gumbel_rank(jnp.zeros(shape), key), self.budget))
        return np.asarray(jax.device_get(jax.jit(draw)(keys))) > 0

    def mask_scores(self, params, batch_stats, masks, batch):
        """``(loss [K], accuracy [K])``: the supernet's cross-entropy and top-1 accuracy on
        ``batch`` (``image``, ``label``) with each 0/1 mask of ``masks [K, L, 6]``, every
        kept branch at weight 1 and the BatchNorms on the batch's own statistics (each mask
        scored with its own, as one-shot NAS recalibrates them). Masks run 4 at a time
        (``jax.lax.map``), so memory stays that of 4 forward passes whatever K."""
        def score(mask):
            variables = {"params": params, "batch_stats": batch_stats,
                         "branch_weights": self.branch_weights(mask, mask)}
            logits, _ = self.model.apply(variables, batch["image"], train=True, mutable=["batch_stats"])
            return cross_entropy(logits, batch["label"], 0.0), jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return jax.lax.map(score, jnp.asarray(masks, jnp.float32), batch_size=4)

    def fixed_model(self, mask) -> nn.Module:
        """The model with the static ``branch_mask`` of the bool ``[L, 6]`` ``mask``."""
        return self.model.clone(branch_mask=static_branch_mask(self.paths, mask))

    def init(self, rng, batch):
        variables = self.model.init({"params": rng}, batch["image"], train=False)
        params = variables["params"]
        scale = self.stability.scale_init(self.online)
        if scale != 1.0:
            params = scale_primitive_outputs(params, self.layers, scale, self.online)
        shape = (len(self.layers), self.budget.total_branches // len(self.layers))
        alphas = jnp.zeros(shape, jnp.float32)
        extra = {"alphas": alphas, "alpha_opt": self.alpha_tx.init(alphas),
                 "kept_steps": jnp.zeros(shape, jnp.float32), "search_steps": jnp.zeros((), jnp.float32),
                 "mask_trace": jnp.zeros((self.schedule.trace_snapshots, *shape), jnp.float32),
                 "noise": gumbel_rank(jnp.zeros_like(alphas), jax.random.fold_in(rng, 1)),
                 "alpha_grad_sum": jnp.zeros(shape, jnp.float32), "alpha_grad_sq_sum": jnp.zeros(shape, jnp.float32)}
        return {"params": params, "batch_stats": variables["batch_stats"], "extra": extra}

    # -- masks ----------------------------------------------------------------------------
    def sample(self, alphas, rng, noise_scale=1.0):
        """``(mask, weights)`` ``[L, 6]``: Gumbel top-k, straight-through."""
        rank = gumbel_rank(alphas, rng, noise_scale)
        mask = kept_mask(rank, self.budget)
        return mask, straight_through(rank, mask)

    def step_sample(self, extra, rng):
        """``(mask, weights)`` of one training step whose own key is ``rng``: with a noise
        lifetime of 1, fresh noise from ``rng``; else the slowly refreshed
        ``extra['noise']``. The noise is scaled by the annealing schedule."""
        scale = self.noise_scale(extra["search_steps"])
        if self.stability.noise_lifetime == 1:
            return self.sample(extra["alphas"], rng, scale)
        rank = extra["alphas"] + scale * extra["noise"]
        mask = kept_mask(rank, self.budget)
        return mask, straight_through(rank, mask)

    def noise_scale(self, search_steps):
        """The Gumbel noise scale after ``search_steps`` phase-2 steps: 1 through phase 1,
        then linear to ``noise_final`` at the fix step (the float 1.0 when not annealed)."""
        final = self.stability.noise_final
        if final == 1.0:
            return 1.0
        done = jnp.minimum(search_steps / max(self.schedule.search_steps, 1), 1.0)
        return 1.0 - (1.0 - final) * done

    def branch_weights(self, mask, weights):
        """The ``branch_weights`` collection of the 0/1 ``mask`` and the branch ``weights``
        (both ``[L, 6]``, traced or not) for ``branch_compute``. Dense: masked branches
        weighted 0, and an empty layer without identity gets its conv3x3 at weight 1 (the
        fallback the cond path and a static mask take)."""
        if self.branch_compute == "cond":
            return branch_weights_collection(self.paths, weights, mask)
        fallback = (mask.sum(axis=1) == 0) & ~jnp.asarray(self._identity)
        dense = jnp.where(mask > 0, weights, 0.0).at[:, 2].add(fallback.astype(weights.dtype))
        return branch_weights_collection(self.paths, dense)

    # -- the loss -------------------------------------------------------------------------
    def loss(self, params, extra, batch_stats, batch, rng, train):
        """The supernet with this step's sampled mask (training) or the noise-free top-k of
        the alphas (evaluation)."""
        if train:
            mask, weights = self.step_sample(extra, rng)
        else:
            mask = weights = kept_mask(extra["alphas"], self.budget)
        variables = {"params": params, "batch_stats": batch_stats,
                     "branch_weights": self.branch_weights(mask, weights)}
        if not train:
            logits = self.model.apply(variables, batch["image"], train=False)
            return cross_entropy(logits, batch["label"], 0.0, batch.get("mask")), (logits, batch_stats, {})
        logits, updates = self.model.apply(variables, batch["image"], train=True, mutable=["batch_stats"])
        loss = cross_entropy(logits, batch["label"], self.label_smoothing)
        return loss, (logits, updates["batch_stats"], {"kept_branches": mask.sum()})

    def update_extra(self, extra, extra_grads, step, rng):
        """Phase 1: alphas unchanged; phase 2: one alpha optimiser step, the step's mask
        (drawn again as the loss drew it) counted into ``kept_steps`` and the new
        noise-free mask written to its ``mask_trace`` snapshot. Each entry of the noise is
        drawn anew with probability ``1 / noise_lifetime`` (from ``rng``)."""
        searching = step >= self.schedule.random_steps
        mask, _ = self.step_sample(extra, rng)
        updates, alpha_opt = self.alpha_tx.update(extra_grads["alphas"], extra["alpha_opt"], extra["alphas"])
        keep_old = lambda new, old: jnp.where(searching, new, old)  # noqa: E731
        alphas = keep_old(optax.apply_updates(extra["alphas"], updates), extra["alphas"])
        slot = jnp.clip(self.schedule.trace_slot(step), 0, self.schedule.trace_snapshots - 1)
        trace = extra["mask_trace"].at[slot].set(kept_mask(alphas, self.budget))
        fresh_key, refresh_key = jax.random.split(jax.random.fold_in(rng, 1))
        refresh = jax.random.bernoulli(refresh_key, 1.0 / self.stability.noise_lifetime, alphas.shape)
        noise = jnp.where(refresh, gumbel_rank(jnp.zeros_like(alphas), fresh_key), extra["noise"])
        counted = searching * mask
        grad = extra_grads["alphas"]
        return {**extra, "alphas": alphas, "mask_trace": keep_old(trace, extra["mask_trace"]),
                "alpha_opt": jax.tree.map(keep_old, alpha_opt, extra["alpha_opt"]),
                "kept_steps": extra["kept_steps"] + counted,
                "search_steps": extra["search_steps"] + searching, "noise": noise,
                "alpha_grad_sum": extra["alpha_grad_sum"] + counted * grad,
                "alpha_grad_sq_sum": extra["alpha_grad_sq_sum"] + counted * grad * grad}


def alpha_gradient_t(extra, min_steps: int = 4) -> np.ndarray:
    """``[L, 6]`` float64: each alpha's mean phase-2 gradient over the steps that kept its
    branch divided by its standard error (a one-sample t statistic; NaN for a branch kept
    in fewer than ``min_steps`` steps). An alpha can only learn what its gradient's sign
    says consistently (``nas_jax.repnas.run.gradient_summary`` tests that)."""
    n = np.asarray(extra["kept_steps"], np.float64)
    total = np.asarray(extra["alpha_grad_sum"], np.float64)
    squares = np.asarray(extra["alpha_grad_sq_sum"], np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / n
        variance = (squares - n * mean * mean) / (n - 1)
        t = mean / np.sqrt(np.maximum(variance, 0.0) / n)
    return np.where(n >= min_steps, t, np.nan)


def fixed_phase_start(state):
    """The state the fixed phase starts from, given the search's last ``state``: every
    BatchNorm's statistics reset, the search's own ``extra`` left behind."""
    return state.replace(batch_stats=reset_batch_stats(state.batch_stats), extra={})
