"""What a search found, in readable form: ``genotype.json`` and heatmaps of ``[L, 6]``
arrays (the alphas, the fraction of search steps each branch was kept).

``genotype.json``::

    {"primitives": [...6 names...], "kept_branches": int, "total_branches": int,
     "layers": [{"path": "features_1", "kept": ["conv1x1", "conv3x3"], "identity": true,
                 "fallback_conv3x3": false, "alphas": [...6 floats...]}, ...]}

``identity``: the always-on BN-only identity branch; ``fallback_conv3x3``: the layer kept
no branch and has no identity, so it computes ``conv3x3`` (as the official code does);
``alphas``: the layer's architecture parameters (absent when unknown).
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from nas_jax.common import save_figure, write_json_atomic
from nas_jax.rep.blocks import PRIMITIVES
from nas_jax.repnas.searchable import SearchableLayer

GENOTYPE_FILE = "genotype.json"


def genotype(layers: Sequence[SearchableLayer], mask, alphas=None) -> dict:
    mask = np.asarray(mask) > 0
    rows = [{"path": layer.path, "kept": [PRIMITIVES[i] for i in np.flatnonzero(row)],
             "identity": layer.has_identity, "fallback_conv3x3": not row.any() and not layer.has_identity}
            for layer, row in zip(layers, mask)]
    if alphas is not None:
        for row, layer_alphas in zip(rows, np.asarray(alphas, np.float64)):
            row["alphas"] = [float(a) for a in layer_alphas]
    return {"primitives": list(PRIMITIVES), "kept_branches": int(mask.sum()), "total_branches": int(mask.size),
            "layers": rows}


def write_genotype(path: str, layers: Sequence[SearchableLayer], mask, alphas=None) -> dict:
    data = genotype(layers, mask, alphas)
    write_json_atomic(path, data, indent=2)
    return data


def read_genotype_mask(path: str, paths: Sequence[str]) -> np.ndarray:
    """The bool ``[L, 6]`` mask of a ``genotype.json`` for the layers ``paths`` (in order)."""
    with open(path) as f:
        data = json.load(f)
    by_path = {row["path"]: row["kept"] for row in data["layers"]}
    missing = [p for p in paths if p not in by_path]
    if missing or len(by_path) != len(paths):
        raise ValueError(f"{path}: its layers do not match the model's ({len(by_path)} vs {len(paths)}; "
                         f"missing {missing[:5]})")
    unknown = {name for kept in by_path.values() for name in kept} - set(PRIMITIVES)
    if unknown:
        raise ValueError(f"{path}: unknown primitives {sorted(unknown)}; expected names from {PRIMITIVES}")
    return np.array([[name in by_path[p] for name in PRIMITIVES] for p in paths])


def plot_heatmap(path: str, values, layers: Sequence[SearchableLayer], title: str, mask=None,
                 colorbar_label: str = "") -> str:
    """A layer x primitive heatmap of ``values`` ``[L, 6]`` saved as PNG at ``path``;
    ``mask`` (optional, ``[L, 6]``) marks the kept branches with a dot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(values, np.float64)
    fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.28 * len(layers)))
    image = ax.imshow(values, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(PRIMITIVES)), PRIMITIVES, rotation=30, ha="right")
    ax.set_yticks(range(len(layers)), [f"{layer.path}{'' if layer.strides == 1 else ' (s2)'}" for layer in layers],
                  fontsize=7)
    if mask is not None:
        rows, cols = np.nonzero(np.asarray(mask) > 0)
        ax.scatter(cols, rows, s=12, c="white", edgecolors="black", linewidths=0.5)
        title += " (dots: kept)"
    fig.colorbar(image, ax=ax, label=colorbar_label)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return save_figure(fig, path, 110)


def plot_mask_trace(path: str, trace, layers: Sequence[SearchableLayer], first_step: int, last_step: int) -> str:
    """How the noise-free mask changed over the search, saved as PNG at ``path``: ``trace``
    ``[S, L, 6]`` snapshots (``RepNASTask``'s ``mask_trace``, taken evenly from search step
    ``first_step`` to ``last_step``) as a (layer, primitive) x snapshot image, kept
    branches dark, with the number of branches that changed between snapshots below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trace = np.asarray(trace, np.float64) > 0
    snapshots, num_layers, num_primitives = trace.shape
    rows = trace.reshape(snapshots, -1).T  # [L * 6, S], layer-major
    steps = np.linspace(first_step, last_step, snapshots + 1)[1:]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 2.0 + 0.32 * num_layers), sharex=True,
                                      gridspec_kw={"height_ratios": [5, 1]})
    extent = (steps[0] - 0.5 * (steps[1] - steps[0]) if snapshots > 1 else first_step, steps[-1],
              num_layers * num_primitives - 0.5, -0.5)
    top.imshow(rows, aspect="auto", cmap="Greys", interpolation="nearest", extent=extent, vmin=0, vmax=1)
    for boundary in range(1, num_layers):
        top.axhline(boundary * num_primitives - 0.5, color="tab:blue", linewidth=0.4)
    top.set_yticks([i * num_primitives + (num_primitives - 1) / 2 for i in range(num_layers)],
                   [layer.path for layer in layers], fontsize=7)
    top.set_title(f"noise-free mask during the search (dark: kept; rows per layer: {', '.join(PRIMITIVES)})",
                  fontsize=8)
    changes = np.concatenate([[0], np.abs(np.diff(rows.astype(int), axis=1)).sum(axis=0)])
    bottom.plot(steps, changes, marker=".", color="tab:red")
    bottom.set_ylabel("changed", fontsize=8)
    bottom.set_xlabel("training step")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return save_figure(fig, path, 110)
