"""The ``repnas`` section of a RepNAS experiment config (``c.repnas``), with the
official defaults; the rest of the config is the training loop's
(``nas_jax.train.config.default_config``), where ``block`` picks the supernet's block:
``'repnas'`` (the exact RepNAS block) or ``'repnas_online'`` (per-branch scale vectors
instead of BatchNorms, the kept branches collapsed into one 3x3 conv every step, so the
search and the fixed phase cost about a plain step: OREPA's idea applied to RepNAS, not
the paper's method)."""
from __future__ import annotations

import ml_collections


def repnas_section(**overrides) -> ml_collections.ConfigDict:
    """Keys:

    kept_ratio: kept branches / all (layers x 6); budget: 'count' (k = int(L * 6 * ratio))
      or 'cost' (branches weighted by their MACs, ratio of the total); per_layer_cap: at
      most this many branches in a layer (0 = no cap);
    random_epochs, search_epochs: phase lengths (then the fixed sub-network to the end);
    alpha_*: the alphas' Adam (L2 weight decay); branch_compute: 'cond' (masked branches
      not computed), 'dense' (all six computed, masked ones weighted 0) or 'auto' (the
      faster on the backend: dense on the CPU, 3.45x faster there, cond elsewhere);
    noise_lifetime, noise_final, branch_scale_init: how the search samples masks and how the
      branches start (``nas_jax.repnas.task.SearchStability``): each branch's Gumbel noise
      lives ``noise_lifetime`` steps on average, the noise is annealed from 1 to
      ``noise_final`` over the search phase, every primitive's output scale starts at
      ``branch_scale_init`` (-1: 0 for the exact block, 1 for the online one). Defaults
      48 / 0.05 / -1 make the supernet learn (README, "Does each search search?"); the
      paper's behaviour is 1 / 1.0 / 1.0;
    fixed_mask: 'searched' (the noise-free top-k of the alphas, the method), 'random' (a
      random mask under the same budget: the baseline a search must beat;
      experiments/search_sanity.py), 'one_shot' (of ``one_shot_candidates`` random masks under
      the budget, the one with which the supernet at the fix step has the lowest loss on the
      first ``one_shot_examples`` images of ``eval_split``: one-shot selection, as SPOS and
      random search with weight sharing pick; not the paper's method, best with
      ``search_epochs=0``, since the alpha search trains the supernet on the alphas' own
      top-k last) or the path of a ``genotype.json`` (another run's mask);
      random_mask_seed: the seed that mask is drawn from (-1: the config's seed; another
      value varies the mask alone);
    fixed_start: 'search' (the paper: the fixed sub-network starts from the search's weights
      at the fix step and trains to the end of the schedule) or 'scratch' (the usual NAS
      evaluation: the fixed sub-network trains the whole schedule from a fresh
      initialisation, every branch at full scale; the search phase runs only for
      ``fixed_mask='searched'``);
    test_split: the split the final report evaluates.
    """
    r = ml_collections.ConfigDict()
    r.kept_ratio, r.budget, r.per_layer_cap = 0.34, "count", 0
    r.random_epochs, r.search_epochs = 15.0, 35.0
    r.alpha_learning_rate, r.alpha_b1, r.alpha_b2, r.alpha_weight_decay = 1e-4, 0.5, 0.999, 5e-4
    r.branch_compute = "auto"
    r.noise_lifetime, r.noise_final, r.branch_scale_init = 48, 0.05, -1.0
    r.fixed_mask, r.random_mask_seed, r.fixed_start = "searched", -1, "search"
    r.one_shot_candidates, r.one_shot_examples = 64, 2000
    r.test_split = "test"
    for key, value in overrides.items():
        if key not in r:
            raise KeyError(f"unknown repnas config key {key!r}; known: {sorted(r.keys())}")
        r[key] = value
    return r
