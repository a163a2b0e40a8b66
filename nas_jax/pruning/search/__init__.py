"""Graph Pruning, part 2: searching width configurations of a trained Graph PruningNet.

- ``space``: candidates (a grid index per prunable group), exact vectorised FLOPs and
  parameter counts, budgets (hard: clamped; or a penalty).
- ``evaluate``: many candidates' validation accuracy at once (vmap over width masks),
  BatchNorm recalibrated per candidate.
- ``policy``: the RL policy over per-group widths, its state the trained GCN's node
  features pooled per coupled group; REINFORCE (moving-average baseline, entropy bonus)
  or PPO.
- ``searchers``: uniform, random, evolutionary (MetaPruning) and RL searchers behind one
  propose / observe interface.
- ``history``: every evaluated candidate; ``driver``: the search loop under an evaluation
  budget, its checkpoint (resume) and ``best.json``; ``pareto``: the accuracy-vs-FLOPs
  picture of every method's candidates.
- ``config`` (the search settings), ``setup`` (a search on a trained work directory),
  ``cli`` (``nas-jax prune search``).
"""
