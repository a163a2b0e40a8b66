"""Graph PruningNet on the linen ViT of ``experiments/models/vit.py`` (heads and MLP widths pruned; the embedding kept whole: drop ``keep_full`` to prune it too), on the embedded digits (32x32x3).

    nas-jax prune train --config experiments/configs/prune_vit_digits.py --workdir W
    nas-jax prune search --workdir W --method evolution --budget flops=0.5
    nas-jax prune export --workdir W --widths W/search/evolution/best.json --out W/export
"""
import os

import ml_collections

from nas_jax.train.config import load_config


def get_config():
    """``prune_custom_digits.py``'s schedule and pruning settings, on this model."""
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "prune_custom_digits.py"))
    c.model = "experiments/models/vit.py:vit"  # named by its path from the repository root
    c.model_kwargs = ml_collections.ConfigDict({"width": 64, "depth": 2, "heads": 4, "mlp": 128})
    c.pruning.keep_full = ["embed"]  # the embedding width only where asked: sampling it slows the PruningNet
    return c
