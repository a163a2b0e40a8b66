"""The Graph PruningNet: a GCN over the layer graph, then one weight generator per layer.

For kept widths ``channels`` [num_groups]:

1. ``node_features`` [num_layers, NUM_FEATURES]: kind one-hot (conv, depthwise, dense),
   kernel height / 7, stride / 2, full input and output widths / the widest layer, depth
   position in [0, 1], the layer's share of the full network's FLOPs and parameters,
   then the kept input and output ratios of this configuration (the only part that
   changes between steps).
2. ``GraphAggregator``: ``depth`` jraph ``GraphConvolution`` layers (symmetric
   normalisation, every edge in both directions, self edges), each ``Dense -> aggregate``,
   ReLU between, giving embeddings [num_layers, features].
3. ``WeightGenerators``: an individual generator per layer, as in MetaPruning
   ``Linear(features -> hidden) -> ReLU -> Linear(-> prod(full kernel shape))``,
   reshaped to the layer's full weight (HWIO for convs, [in, out] for the classifier)
   and scaled by the He standard deviation of the full layer, so a fresh PruningNet
   generates weights of the usual initial size.

The generated weights are full size; ``nas_jax.pruning.masked`` masks their outputs to
the kept widths, so every configuration has the same shapes and one compilation serves all.
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np

from nas_jax.pruning.cost import input_incidence, layer_costs
from nas_jax.pruning.graph import KINDS, LayerGraph
from nas_jax.pruning.widths import full_channels

NUM_FEATURES = len(KINDS) + 8


def static_node_features(graph: LayerGraph) -> np.ndarray:
    """[num_layers, NUM_FEATURES - 2] float32: the configuration-independent features."""
    costs = layer_costs(graph, full_channels(graph))
    widest = max(max(layer.in_channels, layer.out_channels) for layer in graph.layers)
    last = max(len(graph.layers) - 1, 1)
    rows = [[float(layer.kind == k) for k in KINDS]
            + [layer.kernel[0] / 7, layer.stride / 2, layer.in_channels / widest, layer.out_channels / widest,
               i / last, costs["flops"][i] / costs["flops"].sum(), costs["params"][i] / costs["params"].sum()]
            for i, layer in enumerate(graph.layers)]
    return np.asarray(rows, np.float32)


def node_features(graph: LayerGraph, channels) -> jax.Array:
    """[num_layers, NUM_FEATURES] float32 for kept ``channels`` [num_groups] (jit-able)."""
    channels = jnp.asarray(channels, jnp.float32)
    counts, fixed = input_incidence(graph)
    in_ratio = (channels @ counts.T + fixed) / np.asarray([layer.in_channels for layer in graph.layers])
    out_ratio = (channels / full_channels(graph))[np.asarray([layer.group for layer in graph.layers])]
    return jnp.concatenate([jnp.asarray(static_node_features(graph)), in_ratio[:, None], out_ratio[:, None]], 1)


class GraphAggregator(nn.Module):
    """[num_layers, F] node features -> [num_layers, features] embeddings over ``graph``."""
    graph: LayerGraph
    features: int = 64
    depth: int = 2

    @nn.compact
    def __call__(self, nodes):
        graph = self.graph.graphs_tuple(nodes)
        for i in range(self.depth):
            if i:
                graph = graph._replace(nodes=nn.relu(graph.nodes))
            gcn = jraph.GraphConvolution(nn.Dense(self.features, name=f"gcn_{i}"), add_self_edges=True,
                                         symmetric_normalization=True)
            graph = gcn(graph)
        return graph.nodes


@jax.custom_vjp
def expand(hidden: jax.Array, kernel: jax.Array) -> jax.Array:
    """``hidden`` [h] @ ``kernel`` [h, size] -> [size]: a generator's output layer.

    Same value and gradients as the plain product; only the kernel's gradient is spelled
    as the broadcast product ``hidden[:, None] * g[None, :]`` instead of an outer-product
    dot. The kernels hold ``h`` times the network's parameters, so the step is bound by
    memory traffic over them; XLA fuses the elementwise form into the optimiser's update,
    where the dot's result is written out and read back. On the CPU, where the steps
    compile without the algebraic simplifier that would rewrite the dot, this and the
    dependency in the backward pass make the PruningNet step much faster (measured by
    ``experiments/bench_pruning.py``; figures in the README)."""
    return hidden @ kernel


def _expand_forward(hidden, kernel):
    return hidden @ kernel, (hidden, kernel)


def _expand_backward(residuals, g):
    hidden, kernel = residuals
    hidden_grad = kernel @ g
    # Adding 0 * hidden_grad makes the kernel's gradient, so its in-place optimiser update,
    # depend on this last read of the kernel; without the dependency XLA keeps a copy of
    # every kernel for the read (two more passes over them per step). Exact for finite values.
    g = g + 0.0 * hidden_grad.sum()
    return hidden_grad, hidden[:, None] * g[None, :]


expand.defvjp(_expand_forward, _expand_backward)


class WeightGenerators(nn.Module):
    """One two-layer FC generator per node: node ``i``'s embedding goes through its own
    ``hidden_kernel[i]`` [F, hidden] (+ bias, ReLU; batched over nodes as one einsum) and
    its own ``out_kernel_<i>`` [hidden, prod(shapes[i])] (+ ``out_bias_<i>``), reshaped to
    ``shapes[i]`` and scaled by ``scales[i]``. The output layers are separate parameters,
    so each layer's gradient is a plain outer product (no gather or scatter; see ``expand``).

    [num_nodes, F] embeddings -> a list of num_nodes weights."""
    shapes: Tuple[Tuple[int, ...], ...]
    scales: Tuple[float, ...]
    hidden: int = 32

    @nn.compact
    def __call__(self, embeddings) -> List[jax.Array]:
        n, f = embeddings.shape
        w1 = self.param("hidden_kernel", nn.initializers.lecun_normal(batch_axis=(0,)), (n, f, self.hidden))
        b1 = self.param("hidden_bias", nn.initializers.ones, (n, self.hidden))  # no generator starts dead
        h = nn.relu(jnp.einsum("nf,nfh->nh", embeddings, w1) + b1)
        weights = []
        for i, (shape, scale) in enumerate(zip(self.shapes, self.scales)):
            w2 = self.param(f"out_kernel_{i}", nn.initializers.lecun_normal(), (self.hidden, math.prod(shape)))
            b2 = self.param(f"out_bias_{i}", nn.initializers.zeros, (math.prod(shape),))
            weights.append(((expand(h[i], w2) + b2) * scale).reshape(shape))
        return weights


class PruningNet(nn.Module):
    """``channels`` [num_groups] int -> ``{layer path: full weight}``. Parameters:
    ``aggregator`` (the GCN) and ``generators`` (every layer's generator)."""
    graph: LayerGraph
    gcn_features: int = 64
    gcn_depth: int = 2
    generator_hidden: int = 32

    @nn.compact
    def __call__(self, channels) -> Dict[str, jax.Array]:
        layers = self.graph.layers
        embeddings = GraphAggregator(self.graph, self.gcn_features, self.gcn_depth, name="aggregator")(
            node_features(self.graph, channels))
        shapes = tuple(layer.kernel_shape for layer in layers)
        he_std = tuple(math.sqrt(2.0 / math.prod(shape[:-1])) for shape in shapes)
        generated = WeightGenerators(shapes, he_std, self.generator_hidden, name="generators")(embeddings)
        return {layer.path: w for layer, w in zip(layers, generated)}
