"""Width search on the digits PruningNet (experiments/configs/prune_digits.py), scaled
down from MetaPruning's settings: 60 evaluations per search, candidates ranked on the
digits validation split (disjoint from train and test).

    nas-jax prune search --workdir W --method evolution --budget flops=0.5 \\
        --config experiments/configs/prune_search_digits.py
"""
from nas_jax.pruning.search.config import default_config


def get_config():
    c = default_config()
    s = c.search
    # chunk: the default, 1 on the CPU (vmapped candidates, each with its own generated
    # weights, run as grouped convolutions there, slower than one at a time; see
    # experiments/bench_prune_search_eval.py), 8 on an accelerator
    s.evaluations = 60  # candidates evaluated per search
    s.checkpoint_every = 2  # steps between orbax checkpoints
    s.holdout_split = "validation"
    s.random.batch = 10
    s.evolution.population = 20  # evolution population
    s.evolution.top_k = 5  # parents kept per generation
    s.evolution.mutations = 10  # children by mutation per generation
    s.evolution.crossovers = 10  # children by crossover per generation
    s.rl.batch = 10
    s.rl.learning_rate = 0.05
    return c
