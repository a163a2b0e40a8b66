"""The layer graph of a model: its conv layers and classifier, the data flow between them,
and which layers must share one output width (coupled groups).

How the layers and edges are found (``build_layer_graph``): the model's forward pass is
traced once with ``jax.make_jaxpr`` on abstract variables while ``flax.linen.intercept_methods``
wraps every top-level layer call (conv-BN, DBB, RepNAS, deploy conv, ``nn.Conv``,
``nn.Dense``; a layer nested in another, such as a DBB's branches, is part of its parent).
The interceptor tags the layer's input and output with ``checkpoint_name`` (``in:i`` and
``out:i``), which appear in the jaxpr as ``name`` equations. A data-flow pass over the
jaxpr then gives every value the set of layers whose outputs it was computed from,
restarting at each ``out:i`` tag: the set reaching ``in:j`` is the producers of layer
``j``, whatever lies between (activations, pooling, residual additions, casts). The pass
is symbolic: it does not depend on values, so a ReLU that happens to be zero cannot hide
an edge.

Coupling: producers whose outputs meet at one consumer's input were added together
(a residual addition), so they share one width; a depthwise conv (``groups`` equal to its
input and output widths) shares the width of its input. A group containing the
classifier, or fed straight by the image, has a fixed width.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Dict, List, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np
from jax.ad_checkpoint import checkpoint_name
from jax.extend import core as jex_core

from nas_jax.models.network import ZooSpec
from nas_jax.rep.blocks import ConvBN, DeployConv, DiverseBranchBlock, RepNASBlock

LAYER_TYPES = (ConvBN, DeployConv, DiverseBranchBlock, RepNASBlock, nn.Conv, nn.Dense)
KINDS = ("conv", "depthwise", "dense")
IMAGE = -1  # the producer index of the input image


@dataclasses.dataclass(frozen=True)
class Layer:
    """One node of the graph. Channels are the full (unpruned) widths; ``out_hw`` is the
    output feature map's height and width (1, 1 for the classifier)."""
    path: str
    kind: str
    kernel: Tuple[int, int]
    stride: int
    groups: int
    in_channels: int
    out_channels: int
    out_hw: Tuple[int, int]
    producers: Tuple[int, ...]  # indices of the layers feeding it, IMAGE for the image
    group: int  # index into LayerGraph.groups

    @property
    def kernel_shape(self) -> Tuple[int, ...]:
        """The full-size weight's shape: HWIO for a conv, (in, out) for the classifier."""
        if self.kind == "dense":
            return (self.in_channels, self.out_channels)
        return (*self.kernel, self.in_channels // self.groups, self.out_channels)


@dataclasses.dataclass(frozen=True)
class Group:
    """Layers sharing one output width. ``name`` is the path of its first layer."""
    name: str
    layers: Tuple[int, ...]
    channels: int
    fixed: bool


@dataclasses.dataclass(frozen=True)
class LayerGraph:
    """Layers in execution order, edges ``(producer, consumer)`` between layers (the image
    is no node), and the coupled groups. ``input_shape`` is the NHWC shape it was built for."""
    model_name: str
    input_shape: Tuple[int, ...]
    layers: Tuple[Layer, ...]
    edges: Tuple[Tuple[int, int], ...]
    groups: Tuple[Group, ...]

    @property
    def prunable_groups(self) -> Tuple[int, ...]:
        return tuple(g for g, group in enumerate(self.groups) if not group.fixed)

    def in_group(self, layer: Layer) -> int:
        """The group whose width is ``layer``'s input width, IMAGE for the image."""
        return IMAGE if layer.producers == (IMAGE,) else self.layers[layer.producers[0]].group

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


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(int(a) for a in v)


def _describe(module: nn.Module, x, y) -> dict:
    """Kind, kernel, stride and groups of a layer module called on ``x`` giving ``y``."""
    if isinstance(module, nn.Dense):
        return dict(kind="dense", kernel=(1, 1), stride=1, groups=1)
    if isinstance(module, nn.Conv):
        kernel, stride, groups = module.kernel_size, module.strides or 1, module.feature_group_count
    else:  # a nas_jax block; a RepNAS block is always a 3x3 layer
        kernel = 3 if isinstance(module, RepNASBlock) else module.kernel_size
        stride, groups = module.strides, module.groups
    kind = "conv"
    if groups > 1:
        if not groups == x.shape[-1] == y.shape[-1]:
            raise NotImplementedError(f"layer {'/'.join(module.path)}: grouped convs other than "
                                      "depthwise are not supported by the layer graph")
        kind = "depthwise"
    return dict(kind=kind, kernel=_pair(kernel), stride=_pair(stride)[0], groups=groups)


@contextlib.contextmanager
def intercept_layers(wrap: Callable):
    """Within the context, every call of a top-level layer (an instance of ``LAYER_TYPES``
    not called from inside another one) runs as ``wrap(module, call, x)``, where
    ``call(x)`` runs the layer on its input ``x`` (the remaining arguments are kept)."""
    depth = [0]

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or not isinstance(module, LAYER_TYPES) or depth[0] > 0:
            return next_fun(*args, **kwargs)

        def call(x):
            depth[0] += 1
            try:
                return next_fun(x, *args[1:], **kwargs)
            finally:
                depth[0] -= 1

        return wrap(module, call, args[0])

    with nn.intercept_methods(interceptor):
        yield


def _trace_layers(model: nn.Module, input_shape: Sequence[int]):
    """(layer descriptions in call order, the jaxpr of the tagged forward pass, its image
    input variable)."""
    found: List[dict] = []

    def tag(module, call, x):
        index = len(found)
        x = checkpoint_name(x, f"in:{index}")
        y = call(x)
        found.append(dict(path="/".join(module.path), in_channels=x.shape[-1], out_channels=y.shape[-1],
                          out_hw=tuple(y.shape[1:3]) if y.ndim == 4 else (1, 1), **_describe(module, x, y)))
        return checkpoint_name(y, f"out:{index}")

    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    with intercept_layers(tag):
        jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    image_var = jaxpr.jaxpr.invars[-1]
    return found, jaxpr.jaxpr, image_var


def _producers(jaxpr, image_var, num_layers: int) -> List[Tuple[int, ...]]:
    """For each layer, the layers (or IMAGE) its input is computed from, by a symbolic
    data-flow pass over the tagged jaxpr."""
    sources: Dict = {image_var: frozenset([IMAGE])}
    producers: Dict[int, Tuple[int, ...]] = {}
    for eqn in jaxpr.eqns:
        reached = frozenset().union(*(sources.get(v, frozenset()) for v in eqn.invars
                                      if isinstance(v, jex_core.Var)))
        if eqn.primitive.name == "name":
            kind, index = eqn.params["name"].split(":")
            if kind == "in":
                producers[int(index)] = tuple(sorted(reached))
            elif kind == "out":
                reached = frozenset([int(index)])
        elif eqn.primitive.name == "concatenate" and len(reached) > 1:
            raise NotImplementedError("the layer graph does not support concatenated feature maps")
        for v in eqn.outvars:
            sources[v] = reached
    missing = [i for i in range(num_layers) if i not in producers]
    if missing:
        raise RuntimeError(f"layers {missing} were not reached in the traced forward pass")
    return [producers[i] for i in range(num_layers)]


def _coupled_groups(found: List[dict], producers: List[Tuple[int, ...]]) -> List[int]:
    """A group root per layer, by union-find over residual additions and depthwise inputs."""
    parent = list(range(len(found)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for j, srcs in enumerate(producers):
        layers = [i for i in srcs if i != IMAGE]
        if found[j]["kind"] == "depthwise":
            layers.append(j)
        for i in layers[1:]:
            parent[root(i)] = root(layers[0])
    return [root(i) for i in range(len(found))]


def build_layer_graph(model: nn.Module, input_shape: Sequence[int] = (1, 224, 224, 3),
                      model_name: str = "") -> LayerGraph:
    """The layer graph of ``model`` (any form: plain, dbb, repnas, deploy) on NHWC inputs
    of ``input_shape``. Raises ``NotImplementedError`` for structures it cannot prune
    (grouped non-depthwise convs, concatenations, no layer found)."""
    found, jaxpr, image_var = _trace_layers(model, input_shape)
    if not found or found[-1]["kind"] != "dense":
        raise NotImplementedError(f"model {model_name or type(model).__name__}: no conv layers "
                                  "ending in a classifier were found")
    producers = _producers(jaxpr, image_var, len(found))
    for j, srcs in enumerate(producers):
        if IMAGE in srcs and len(srcs) > 1:
            raise NotImplementedError(f"layer {found[j]['path']}: the image is added to a layer's output")
    roots = _coupled_groups(found, producers)
    order = list(dict.fromkeys(roots))  # group roots in order of first appearance
    members = {r: tuple(i for i, ri in enumerate(roots) if ri == r) for r in order}
    groups = []
    for r in order:
        widths = {found[i]["out_channels"] for i in members[r]}
        if len(widths) != 1:
            raise RuntimeError(f"coupled layers {[found[i]['path'] for i in members[r]]} differ in width")
        fixed = any(found[i]["kind"] == "dense" or (found[i]["kind"] == "depthwise" and producers[i] == (IMAGE,))
                    for i in members[r])
        groups.append(Group(found[members[r][0]]["path"], members[r], widths.pop(), fixed))
    layers = tuple(Layer(producers=producers[i], group=order.index(roots[i]), **f) for i, f in enumerate(found))
    edges = tuple((i, j) for j, srcs in enumerate(producers) for i in srcs if i != IMAGE)
    return LayerGraph(model_name, tuple(input_shape), layers, edges, tuple(groups))


def zoo_graph(spec: ZooSpec, block: str = "plain") -> LayerGraph:
    """The layer graph of ``spec``'s zoo model at ``block`` on its image size."""
    return build_layer_graph(spec.model(block), (1, spec.image_size, spec.image_size, 3), spec.name)
