"""The search settings (``ml_collections``), MetaPruning's where it gives them.

``nas-jax prune search --config FILE`` takes a file whose ``get_config()`` returns a
``ConfigDict`` with a ``search`` section like ``default_config()``'s (see
``experiments/configs/prune_search_*.py``); ``--config.search.key=value`` overrides it.
"""
import ml_collections


def search_section() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.seed = 0
    s.budget_mode, s.penalty = "hard", 1.0  # hard: clamp to the budget; penalty: score - penalty * excess
    s.evaluations = 1000  # candidates evaluated per search (MetaPruning: 20 generations x 50)
    s.chunk = 0  # candidates per compiled evaluation call (0: 1 on the CPU, 8 elsewhere)
    s.vmap_width = 0  # of those, how many run side by side under vmap (0: 1 on the CPU, chunk elsewhere)
    s.checkpoint_every = 2  # iterations
    # held-out data the candidates are ranked on (TFDS split syntax, e.g. 'train[:10000]', as
    # MetaPruning's subset of train): not the test split, and no example the PruningNet trained
    # on; holdout_examples > 0 keeps only its first examples
    s.holdout_split, s.holdout_examples = "validation", 0
    # the layer latency table of a latency budget (nas_jax.pruning.search.latency), measured on
    # the current backend and cached in WORKDIR/search/latency_table.json
    s.latency = ml_collections.ConfigDict({"batch": 1, "samples": 3, "repeats": 20, "dtype": "float32"})
    s.random = ml_collections.ConfigDict({"batch": 50})
    s.evolution = ml_collections.ConfigDict(
        {"population": 50, "top_k": 10, "mutations": 25, "mutation_prob": 0.1, "crossovers": 25})
    s.rl = ml_collections.ConfigDict(
        {"batch": 10, "hidden": 64, "learning_rate": 0.01, "entropy_bonus": 0.01, "baseline_momentum": 0.9,
         "algorithm": "reinforce", "ppo_epochs": 4, "ppo_clip": 0.2})
    return s


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.search = search_section()
    return c
