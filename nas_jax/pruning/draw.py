"""A picture of a layer graph: layers left to right in execution order, edges as arcs
(shortcuts bend over the layers they skip), one colour per coupled group (grey: fixed)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

from nas_jax.common import save_figure
from nas_jax.pruning.graph import LayerGraph  # noqa: E402


def _lanes(graph: LayerGraph):
    """A vertical lane per layer: layers fed by the same producers as an earlier layer
    (parallel branches such as a shortcut conv) move one lane down."""
    seen, lanes = {}, []
    for layer in graph.layers:
        lanes.append(seen.get(layer.producers, 0))
        seen[layer.producers] = lanes[-1] + 1
    return lanes


def draw_graph(graph: LayerGraph, path: str) -> None:
    """Writes the picture of ``graph`` to ``path`` (any format matplotlib writes)."""
    n = len(graph.layers)
    lanes = _lanes(graph)
    xy = [(i, -lane) for i, lane in enumerate(lanes)]
    cmap = plt.get_cmap("tab20")
    colour = [(0.6, 0.6, 0.6) if graph.groups[layer.group].fixed else cmap(layer.group % 20)
              for layer in graph.layers]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.45 * n), 4.5))
    for src, dst in graph.edges:
        span = dst - src
        rad = 0.0 if span == 1 and lanes[src] == lanes[dst] else -0.25 - 0.02 * min(span, 10)
        ax.add_patch(FancyArrowPatch(xy[src], xy[dst], arrowstyle="-|>", mutation_scale=8, lw=0.8,
                                     color="0.35", connectionstyle=f"arc3,rad={rad}", shrinkA=6, shrinkB=6))
    ax.scatter([p[0] for p in xy], [p[1] for p in xy], c=colour, s=120, zorder=3, edgecolors="k", linewidths=0.5)
    for (x, y), layer in zip(xy, graph.layers):
        ax.annotate(f"{layer.path} {layer.kernel[0]}x{layer.kernel[1]}/{layer.stride} {layer.out_channels}",
                    (x, y), xytext=(0, -10), textcoords="offset points", rotation=90, ha="center", va="top",
                    fontsize=6)
    ax.set_title(f"{graph.model_name}: {n} layers, {len(graph.edges)} edges, "
                 f"{len(graph.prunable_groups)} prunable groups (colour = coupled group)", fontsize=9)
    ax.set_xlim(-1, n)
    ax.set_ylim(-max(lanes) - 3.5, 1.5)
    ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, 150)
