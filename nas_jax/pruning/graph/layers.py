"""What a layer graph is: its layers, normalisations and coupled groups (frozen
dataclasses, hashable, comparable), and which channels a group keeps."""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import jraph
import numpy as np

KINDS = ("conv", "depthwise", "dense")
IMAGE = -1  # the group index of fixed input channels (the image)
Segments = Tuple[Tuple[int, int], ...]


@dataclasses.dataclass(frozen=True)
class Layer:
    """One node of the graph. Channels are the full (unpruned) widths; ``in_channels`` is
    the whole input axis (``repeat * sum of inputs' widths``; a ``DenseGeneral``'s input
    and output feature axes flattened, heads x head_dim); ``groups`` the conv's feature
    groups (a depthwise conv's is its width); ``out_hw`` the output's height and width
    (the sequence length and 1 for a Dense on tokens [B, L, C], 1, 1 on vectors). ``kernel_path``: its one kernel in ``params``
    (``stage0/conv1/conv/kernel``), None for a multi-branch block; ``vectors``: its
    per-output-channel parameter vectors (a bias: 1, a conv-BN: 2); ``out_axes``: how many trailing axes of its
    kernel are output axes (2 for an attention's query: heads, head_dim)."""
    path: str
    kind: str
    kernel: Tuple[int, int]
    stride: int
    groups: int
    in_channels: int
    out_channels: int
    out_hw: Tuple[int, int]
    producers: Tuple[int, ...]  # indices of the layers feeding it, IMAGE for fixed channels
    group: int  # index into LayerGraph.groups
    inputs: Segments = ()
    repeat: int = 1
    kernel_path: Optional[str] = dataclasses.field(default=None, compare=False)
    vectors: int = dataclasses.field(default=0, compare=False)
    out_axes: int = dataclasses.field(default=1, compare=False)  # a DenseGeneral's output feature axes

    @property
    def kernel_shape(self) -> Tuple[int, ...]:
        """The full-size weight's shape: HWIO for a conv, (in, out) for a Dense."""
        if self.kind == "dense":
            return (self.in_channels, self.out_channels)
        return (*self.kernel, self.in_channels // self.groups, self.out_channels)


@dataclasses.dataclass(frozen=True)
class Norm:
    """A top-level normalisation: ``kind`` batch | layer | group, its group count
    (``GroupNorm``), the channels it reads and its per-channel parameter vectors."""
    path: str
    kind: str
    num_groups: int
    inputs: Segments
    vectors: int


@dataclasses.dataclass(frozen=True)
class Group:
    """Layers sharing one output width. ``name`` is the path of its first layer;
    ``blocks``: kept channels are the same leading ones of each of ``blocks`` equal blocks;
    ``unit``: a kept width is a whole number of units of this many channels (an attention
    head: the query, key and value projections' group keeps whole heads)."""
    name: str
    layers: Tuple[int, ...]
    channels: int
    fixed: bool
    blocks: int = 1
    unit: int = 1

    @property
    def step(self) -> int:
        """Every kept width is a multiple of this."""
        return math.lcm(self.blocks, self.unit)


@dataclasses.dataclass(frozen=True)
class Attention:
    """A ``nn.MultiHeadDotProductAttention`` (or an NNX ``MultiHeadAttention``): its
    ``query``, ``key``, ``value`` and ``out`` projections (layer indices), whose first three
    form one group of ``heads`` x ``head_dim`` channels that keeps whole heads, and the
    query and key/value sequence lengths, for the ``2 * queries * keys * kept channels``
    multiply-accumulates of its scores and weighted sum."""
    path: str
    query: int
    key: int
    value: int
    out: int
    heads: int
    head_dim: int
    queries: int
    keys: int


@dataclasses.dataclass(frozen=True)
class FreeParam:
    """A parameter of no layer or normalisation (a position embedding, a class token) whose
    last axis (``channels`` wide) is a group's channels (``group``; IMAGE: never pruned):
    ``size`` entries per channel."""
    path: str
    group: int
    channels: int
    size: int


@dataclasses.dataclass(frozen=True)
class LayerGraph:
    """Layers in execution order, edges ``(producer, consumer)`` between layers (the image
    is no node), the coupled groups and the normalisations. ``input_shape`` is the NHWC
    shape it was built for; ``batch_norms`` the paths of every ``nn.BatchNorm`` (also
    inside layers); ``attentions`` its multi-head attentions; ``free_params`` the
    parameters outside layers and normalisations that carry a group's channels."""
    model_name: str
    input_shape: Tuple[int, ...]
    layers: Tuple[Layer, ...]
    edges: Tuple[Tuple[int, int], ...]
    groups: Tuple[Group, ...]
    norms: Tuple[Norm, ...] = ()
    batch_norms: Tuple[str, ...] = ()
    attentions: Tuple[Attention, ...] = ()
    free_params: Tuple[FreeParam, ...] = ()

    @property
    def prunable_groups(self) -> Tuple[int, ...]:
        return tuple(g for g, group in enumerate(self.groups) if not group.fixed)

    def in_group(self, layer: Layer) -> int:
        """The one group that is ``layer``'s whole input, IMAGE for fixed channels; a
        ``NotImplementedError`` for a concatenated or flattened input."""
        return single_group(layer.inputs, layer.repeat, f"layer {layer.path}")

    def graphs_tuple(self, nodes) -> jraph.GraphsTuple:
        """A ``GraphsTuple`` over ``nodes`` ([num_layers, F]) with every edge in both
        directions (self edges are added by the GCN)."""
        edges = np.asarray(self.edges, np.int32).reshape(-1, 2)
        senders = np.concatenate([edges[:, 0], edges[:, 1]])
        receivers = np.concatenate([edges[:, 1], edges[:, 0]])
        return jraph.GraphsTuple(nodes=nodes, edges=None, senders=jnp.asarray(senders),
                                 receivers=jnp.asarray(receivers), globals=None,
                                 n_node=jnp.asarray([len(self.layers)]),
                                 n_edge=jnp.asarray([len(senders)]))


def kept_channels(channels: int, blocks: int, kept: int) -> np.ndarray:
    """[kept] int: the indices a group of ``channels`` in ``blocks`` blocks keeps: the
    first ``kept / blocks`` of each block (the first ``kept`` when ``blocks`` is 1)."""
    per_block, size = kept // blocks, channels // blocks
    index = np.arange(kept)
    return (index // per_block) * size + index % per_block


def channel_mask(channels: int, blocks: int, kept) -> jax.Array:
    """[channels] bool of ``kept_channels`` (``kept`` may be traced)."""
    size = channels // blocks
    return jnp.arange(channels) % size < kept // blocks


def single_group(inputs: Segments, repeat: int, what: str) -> int:
    """The one group (or IMAGE) an input laid out as ``inputs`` x ``repeat`` reads; a
    ``NotImplementedError`` naming ``what`` for a concatenated or flattened input."""
    if repeat != 1 or len(inputs) != 1:
        raise NotImplementedError(f"{what} must read one group's channels, not {inputs} x {repeat}")
    return inputs[0][0]
