"""The accuracy-vs-FLOPs picture of every candidate evaluated by every search found
under a directory (``<root>/<method>/state.json``), one colour per method, each
method's ``best.json`` as a star."""
from __future__ import annotations

import glob
import json
import os

from nas_jax.common import save_figure
from nas_jax.pruning.search.driver import BEST_FILE, STATE_FILE


def plot_pareto(root: str, out_path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, state_path in enumerate(sorted(glob.glob(os.path.join(root, "*", STATE_FILE)))):
        directory = os.path.dirname(state_path)
        with open(state_path) as f:
            doc = json.load(f)
        columns, colour = doc["history"]["columns"], f"C{i}"
        label = f"{doc['settings']['method']} ({doc['settings']['budget']}, {len(columns['accuracy'])} evals)"
        ax.scatter(columns["flops_ratio"], columns["accuracy"], s=10, alpha=0.5, color=colour, label=label)
        best_path = os.path.join(directory, BEST_FILE)
        if os.path.isfile(best_path):
            with open(best_path) as f:
                best = json.load(f)
            ax.scatter([best["flops_ratio"]], [best["val_accuracy"]], marker="*", s=180, color=colour,
                       edgecolor="black")
    ax.set_xlabel("FLOPs / full model")
    ax.set_ylabel("held-out accuracy (PruningNet weights, BN recalibrated)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out_path, 120)
