"""The layer graph of a model: its conv and dense layers, the data flow between them,
which layers must share one output width (coupled groups), and which channels of which
groups every layer and normalisation reads.

Tracing (``build_layer_graph``): the model's forward pass is traced once with
``jax.make_jaxpr`` on abstract variables while ``flax.linen.intercept_methods`` wraps every
top-level layer call (conv-BN, DBB, RepNAS, deploy conv, ``nn.Conv``, ``nn.Dense``; a
layer nested in another, such as a DBB's branches, is part of its parent) and every
top-level normalisation (``nn.BatchNorm``, ``nn.LayerNorm``, ``nn.GroupNorm``, a BatchNorm of
another package: ``norm_kind``). The
interceptor tags their inputs and outputs with ``checkpoint_name``, which appear in the
jaxpr as ``name`` equations.

Channel flow: a pass over the jaxpr gives every value a *slot* per entry of its last
(channel) axis, the layer output channel it carries (the image's channels are slots too);
a layer's output tag starts new slots. Elementwise ops (activations, residual additions,
casts, BatchNorm's arithmetic) unite the slots they combine channel by channel;
concatenation on the channel axis concatenates slots; a reshape that keeps or flattens
the channel axis (``x.reshape(B, -1)`` before a Dense) tiles them; pooling, spatial
resizing and other ops off the channel axis keep them. An op that mixes channels outside a
layer (a reduction or a reshape over the channel axis, a transpose that moves it, a raw
``lax.conv``) makes its result *opaque*: a layer that reads it is an error naming the op
and the layer, unless the layer is listed in ``keep_full`` (then it and every group feeding
the op keep their full width). A normalisation is channelwise here; its output carries
its input's slots.

Groups: layers whose output slots were united (a residual addition; a depthwise conv and
its input) share one width, channel by channel. A group fed by the image, reaching the
model's output, or holding a ``keep_full`` layer is fixed. A grouped conv (``G`` groups)
and a ``GroupNorm`` (``G`` groups) split their groups' channels into ``G`` blocks: such a
group keeps the same leading channels of each of ``blocks`` equal blocks (see
``kept_channels``), so a pruned GroupNorm keeps its group count and each group's members.

Each layer and normalisation reads ``inputs``, segments ``(group, width)`` of its channel
axis in order (``IMAGE`` for fixed channels: the image, constants, an opaque input),
repeated ``repeat`` times (a flattened ``H x W x C`` map feeds a Dense ``H * W`` copies of
its channel pattern, channel fastest).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np
from flax import traverse_util
from jax.ad_checkpoint import checkpoint_name
from jax.extend import core as jex_core

from nas_jax.models.network import ZooSpec
from nas_jax.rep.kinds import BLOCK_MODULES, kind_of_module
from nas_jax.rep.walk import intercept_modules, norm_kind

LAYER_TYPES = BLOCK_MODULES + (nn.Conv, nn.Dense)
NORM_TYPES = (nn.BatchNorm, nn.LayerNorm, nn.GroupNorm)

KINDS = ("conv", "depthwise", "dense")
IMAGE = -1  # the group index of fixed input channels (the image)
Segments = Tuple[Tuple[int, int], ...]


@dataclasses.dataclass(frozen=True)
class Layer:
    """One node of the graph. Channels are the full (unpruned) widths; ``in_channels`` is
    the whole input axis (``repeat * sum of inputs' widths``); ``groups`` the conv's
    feature groups (a depthwise conv's is its width); ``out_hw`` the output's height and
    width (1, 1 for a Dense on vectors). ``kernel_path``: its one kernel in ``params``
    (``stage0/conv1/conv/kernel``), None for a multi-branch block; ``vectors``: its
    per-output-channel parameter vectors (a bias: 1, a conv-BN: 2)."""
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
    ``blocks``: kept channels are the same leading ones of each of ``blocks`` equal blocks."""
    name: str
    layers: Tuple[int, ...]
    channels: int
    fixed: bool
    blocks: int = 1


@dataclasses.dataclass(frozen=True)
class LayerGraph:
    """Layers in execution order, edges ``(producer, consumer)`` between layers (the image
    is no node), the coupled groups and the normalisations. ``input_shape`` is the NHWC
    shape it was built for; ``batch_norms`` the paths of every ``nn.BatchNorm`` (also
    inside layers)."""
    model_name: str
    input_shape: Tuple[int, ...]
    layers: Tuple[Layer, ...]
    edges: Tuple[Tuple[int, int], ...]
    groups: Tuple[Group, ...]
    norms: Tuple[Norm, ...] = ()
    batch_norms: Tuple[str, ...] = ()

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


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(int(a) for a in v)


def _describe(module: nn.Module, x, y) -> dict:
    """Kind, kernel, stride and groups of a layer module called on ``x`` giving ``y``."""
    if isinstance(module, nn.Dense):
        return dict(kind="dense", kernel=(1, 1), stride=1, groups=1)
    if isinstance(module, nn.Conv):
        kernel, stride, groups = module.kernel_size, module.strides or 1, module.feature_group_count
    else:  # a nas_jax block (a RepNAS block is always a 3x3 layer)
        kernel = kind_of_module(module).fixed_kernel_size or module.kernel_size
        stride, groups = module.strides, module.groups
    kind = "depthwise" if groups > 1 and groups == x.shape[-1] == y.shape[-1] else "conv"
    return dict(kind=kind, kernel=_pair(kernel), stride=_pair(stride)[0], groups=groups)


def intercept_layers(wrap: Callable, norms: Optional[Callable] = None):
    """A context in which every top-level layer (``LAYER_TYPES``) call runs as
    ``wrap(module, call, x)`` and, if ``norms`` is given, every top-level normalisation
    (``norm_kind``) call as ``norms(module, call, x)`` (``nas_jax.rep.walk``)."""
    return intercept_modules([(LAYER_TYPES, wrap)] + ([(norm_kind, norms)] if norms is not None else []))


def _own_params(module: nn.Module, out_channels: int) -> Tuple[Optional[str], int]:
    """(path of the module's one kernel, number of [out_channels] parameter vectors)."""
    flat = traverse_util.flatten_dict(module.variables.get("params", {}))
    kernels = [k for k, v in flat.items() if k[-1] == "kernel" and len(v.shape) >= 2]
    vectors = sum(1 for v in flat.values() if tuple(v.shape) == (out_channels,))
    path = "/".join(module.path + kernels[0]) if len(kernels) == 1 else None
    return path, vectors


def _trace(model: nn.Module, input_shape: Sequence[int]):
    """(layer descriptions in call order, normalisation descriptions, BatchNorm paths, the
    closed jaxpr of the tagged forward pass)."""
    layers: List[dict] = []
    norms: List[dict] = []
    batch_norms: List[str] = []

    def tag_layer(module, call, x):
        index = len(layers)
        x = checkpoint_name(x, f"in:{index}")
        y = call(x)
        kernel_path, vectors = _own_params(module, y.shape[-1])
        layers.append(dict(path="/".join(module.path), in_channels=x.shape[-1], out_channels=y.shape[-1],
                           out_hw=tuple(y.shape[1:3]) if y.ndim == 4 else (1, 1), kernel_path=kernel_path,
                           vectors=vectors, **_describe(module, x, y)))
        return checkpoint_name(y, f"out:{index}")

    def tag_norm(module, call, x):
        index = len(norms)
        x = checkpoint_name(x, f"nin:{index}")
        y = call(x)
        kind = norm_kind(module)
        groups = module.num_groups or x.shape[-1] // module.group_size if kind == "group" else 1
        norms.append(dict(path="/".join(module.path), kind=kind, num_groups=groups,
                          vectors=_own_params(module, x.shape[-1])[1]))
        return checkpoint_name(y, f"nout:{index}")

    def record_batch_norms(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and norm_kind(context.module) == "batch":
            batch_norms.append("/".join(context.module.path))
        return next_fun(*args, **kwargs)

    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    with nn.intercept_methods(record_batch_norms), intercept_layers(tag_layer, tag_norm):
        jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    return layers, norms, tuple(dict.fromkeys(batch_norms)), jaxpr.jaxpr


CHANNEL_MIXING = {"dot_general", "conv_general_dilated", "cumsum", "cumprod", "cummax", "cummin",
                  "cumlogsumexp", "sort", "fft", "gather", "scatter", "scatter-add", "scatter_add",
                  "dynamic_slice", "dynamic_update_slice", "argsort", "top_k"}


@dataclasses.dataclass(frozen=True)
class _Value:
    """What the channel pass knows of a traced value: ``slots`` [last dim] (``-1``: no
    source) or None (computed from parameters and constants only); ``opaque``: the op that
    mixed its channels and the slots it mixed; ``reached``: the layers (IMAGE) it comes from."""
    slots: Optional[np.ndarray] = None
    opaque: Optional[Tuple[str, frozenset]] = None
    reached: frozenset = frozenset()


_NONE = _Value()


class _UnionFind:
    """Union-find over the integers ``0 .. size - 1`` (``grow`` adds more); the smaller
    index is the root of a union."""

    def __init__(self, size: int = 0):
        self.parent = list(range(size))

    def grow(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n)

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class _ChannelFlow(_UnionFind):
    """The symbolic pass over a tagged jaxpr (see the module doc)."""

    def __init__(self):
        super().__init__()
        self.layer_slots: Dict[int, np.ndarray] = {}
        self.layer_in: Dict[int, _Value] = {}
        self.norm_in: Dict[int, _Value] = {}

    # -- rules ---------------------------------------------------------------------------
    @staticmethod
    def _opaque(op: str, values: Sequence[_Value]) -> _Value:
        slots = frozenset().union(*(frozenset(int(s) for s in v.slots if s >= 0) for v in values
                                    if v.slots is not None),
                                  *(v.opaque[1] for v in values if v.opaque))
        reached = frozenset().union(*(v.reached for v in values))
        if not slots and not any(v.opaque for v in values):
            return _Value(reached=reached)
        first = next((v.opaque[0] for v in values if v.opaque), op)
        return _Value(opaque=(first, slots), reached=reached)

    def _elementwise(self, values: Sequence[_Value], width: int) -> _Value:
        if any(v.opaque for v in values):
            return self._opaque("", values)
        reached = frozenset().union(*(v.reached for v in values))
        arrays = [v.slots for v in values if v.slots is not None and v.slots.shape[0] == width]
        if not arrays:
            return _Value(reached=reached)
        out = arrays[0].copy()
        for a in arrays[1:]:
            both = (out >= 0) & (a >= 0)
            for s, t in zip(out[both], a[both]):
                self.union(int(s), int(t))
            out = np.where(out >= 0, out, a)
        return _Value(out, None, reached)

    def _apply(self, eqn, values: List[_Value]) -> List[_Value]:
        name = eqn.primitive.name
        outs = [v.aval for v in eqn.outvars]
        out_shape = tuple(getattr(outs[0], "shape", ()))
        width = out_shape[-1] if out_shape else 0
        sub = next((p for p in eqn.params.values() if isinstance(p, (jex_core.ClosedJaxpr, jex_core.Jaxpr))
                    and len((p.jaxpr if isinstance(p, jex_core.ClosedJaxpr) else p).invars) == len(values)), None)
        if sub is not None:
            return self.run(sub.jaxpr if isinstance(sub, jex_core.ClosedJaxpr) else sub, values)
        if name == "name":
            return [self._tag(eqn.params["name"], values[0], width)]
        if all(v.slots is None and not v.opaque for v in values):
            reached = frozenset().union(*(v.reached for v in values))
            return [_Value(reached=reached)] * len(outs)
        x = values[0]
        in_shape = tuple(getattr(eqn.invars[0].aval, "shape", ()))
        keep = x if (in_shape and out_shape and in_shape[-1] == out_shape[-1]) else None
        if x.opaque and name not in ("concatenate",):
            return [self._opaque(name, values)] * len(outs)
        if name in CHANNEL_MIXING:
            return [self._opaque(name, values)] * len(outs)
        if name == "concatenate":
            if eqn.params["dimension"] != len(out_shape) - 1:
                return [self._elementwise(values, width)]
            if any(v.opaque for v in values):
                return [self._opaque(name, values)]
            parts = [v.slots if v.slots is not None else np.full(var.aval.shape[-1], -1)
                     for v, var in zip(values, eqn.invars)]
            return [_Value(np.concatenate(parts), None, frozenset().union(*(v.reached for v in values)))]
        if name == "reshape":
            if keep is not None:
                return [keep]
            if x.slots is not None and in_shape and out_shape and out_shape[-1] % in_shape[-1] == 0:
                return [_Value(np.tile(x.slots, out_shape[-1] // in_shape[-1]), None, x.reached)]
            return [self._opaque("reshape over the channel axis", values)]
        if name == "broadcast_in_dim":
            dims = eqn.params["broadcast_dimensions"]
            if in_shape and dims[-1] == len(out_shape) - 1 and in_shape[-1] == width:
                return [x]
            if not in_shape or (in_shape[-1] == 1 and dims[-1] == len(out_shape) - 1):
                return [_Value(reached=x.reached)]  # one value spread over all channels (a gate)
            return [self._opaque(name, values)]
        if name == "transpose":
            perm = eqn.params["permutation"]
            return [x if perm[-1] == len(perm) - 1 else self._opaque("transpose of the channel axis", values)]
        if name.startswith("reduce_") and "window" not in name or name in ("argmax", "argmin"):
            axes = eqn.params["axes"]
            last = len(in_shape) - 1
            return [self._opaque(f"{name} over the channel axis", values) if last in axes else x]
        if name.startswith("reduce_window"):
            return [x if eqn.params["window_dimensions"][-1] == 1 else self._opaque(name, values)]
        if name == "pad":
            config = eqn.params["padding_config"][-1]
            return [x if tuple(config) == (0, 0, 0) else self._opaque("padding of the channel axis", values)]
        if name == "slice":
            start, limit = eqn.params["start_indices"][-1], eqn.params["limit_indices"][-1]
            step = (eqn.params["strides"] or [1] * len(in_shape))[-1]
            return [_Value(x.slots[start:limit:step], None, x.reached) if x.slots is not None else x]
        if name == "rev":
            dims = eqn.params["dimensions"]
            return [self._opaque("reversal of the channel axis", values) if len(in_shape) - 1 in dims else x]
        if name in ("squeeze", "expand_dims", "copy", "copy_p") and keep is not None:
            return [keep]
        if all(tuple(getattr(var.aval, "shape", ())) in (out_shape, ()) for var, v in zip(eqn.invars, values)
               if v.slots is not None):
            return [self._elementwise(values, width)] * len(outs)
        return [self._opaque(name, values)] * len(outs)

    def _tag(self, tag: str, x: _Value, width: int) -> _Value:
        kind, index = tag.split(":")
        index = int(index)
        if kind == "in":
            self.layer_in[index] = x
            return x
        if kind == "out":
            self.layer_slots[index] = self.grow(width)
            return _Value(self.layer_slots[index], None, frozenset([index]))
        if kind == "nin":
            self.norm_in[index] = x
            return x
        if kind == "nout":
            return self.norm_in[index]
        return x

    def run(self, jaxpr, inputs: Sequence[_Value]) -> List[_Value]:
        env: Dict = dict(zip(jaxpr.invars, inputs))
        read = lambda v: env.get(v, _NONE) if isinstance(v, jex_core.Var) else _NONE  # noqa: E731
        for eqn in jaxpr.eqns:
            for var, value in zip(eqn.outvars, self._apply(eqn, [read(v) for v in eqn.invars])):
                env[var] = value
        return [read(v) for v in jaxpr.outvars]


def build_layer_graph(model: nn.Module, input_shape: Sequence[int] = (1, 224, 224, 3), model_name: str = "",
                      keep_full: Sequence[str] = ()) -> LayerGraph:
    """The layer graph of ``model`` (any linen model called as ``model(x, train=...)``;
    a zoo model in any form: plain, dbb, repnas, deploy) on NHWC inputs of
    ``input_shape``. ``keep_full``: paths of layers kept at full width (and whatever feeds
    them through an op the graph cannot follow). Raises ``NotImplementedError`` naming the
    layer and the op for a structure it cannot prune."""
    name = model_name or type(model).__name__
    found, norm_found, batch_norms, jaxpr = _trace(model, input_shape)
    if not found:
        raise NotImplementedError(f"model {name}: no conv or dense layers were found (the graph sees flax.linen "
                                  "nn.Conv / nn.Dense and nas_jax.rep blocks; Flax NNX modules, also under "
                                  "nnx.bridge.to_linen, are not traced)")
    unknown = sorted(set(keep_full) - {f["path"] for f in found})
    if unknown:
        raise ValueError(f"keep_full names {unknown}, which are no layers of {name}; its layers are "
                         f"{[f['path'] for f in found]}")
    flow = _ChannelFlow()
    image = flow.grow(input_shape[-1])
    outputs = flow.run(jaxpr, [_NONE] * (len(jaxpr.invars) - 1) + [_Value(image, None, frozenset([IMAGE]))])
    missing = [f["path"] for i, f in enumerate(found) if i not in flow.layer_in or i not in flow.layer_slots]
    if missing:
        raise RuntimeError(f"layers {missing} were not reached in the traced forward pass")
    for i, f in enumerate(found):  # a depthwise conv's channel c is its input's channel c
        x = flow.layer_in[i]
        if f["kind"] == "depthwise" and x.slots is not None and not x.opaque:
            for s, t in zip(x.slots, flow.layer_slots[i]):
                if s >= 0:
                    flow.union(int(s), int(t))

    # layers united channel by channel form a group
    layer_groups = _UnionFind(len(found))
    seen: Dict[int, Tuple[int, int]] = {}  # slot root -> (layer, channel)
    image_roots = {flow.find(int(s)) for s in image}
    for i in range(len(found)):
        for c, s in enumerate(flow.layer_slots[i]):
            r = flow.find(int(s))
            if r in seen:
                j, c_j = seen[r]
                if c_j != c or found[j]["out_channels"] != found[i]["out_channels"]:
                    raise NotImplementedError(
                        f"layers {found[j]['path']} and {found[i]['path']} are combined channel {c_j} with "
                        f"channel {c} (a sliced, reordered or differently sized addition): not supported")
                layer_groups.union(i, j)
            else:
                seen[r] = (i, c)
    roots = [layer_groups.find(i) for i in range(len(found))]
    order = list(dict.fromkeys(roots))
    group_of = [order.index(r) for r in roots]
    slot_group: Dict[int, Tuple[int, int]] = {r: (group_of[i], c) for r, (i, c) in seen.items()}
    fixed = [False] * len(order)
    blocks = [1] * len(order)

    def fix_slots(slots) -> None:
        for s in slots:
            r = flow.find(int(s))
            if r in slot_group:
                fixed[slot_group[r][0]] = True

    def segments(x: _Value, width: int, what: str, keep: bool) -> Tuple[Segments, int]:
        if x.opaque:
            if not keep:
                raise NotImplementedError(
                    f"{what}: its input passes through `{x.opaque[0]}`, an op that mixes or moves channels in a "
                    "way the layer graph cannot follow; keep the layer at full width with "
                    f"config.pruning.keep_full=['{what.split()[-1]}'] (the groups feeding that op stay full too)")
            fix_slots(x.opaque[1])
            return ((IMAGE, width),), 1
        if x.slots is None:
            return ((IMAGE, width),), 1
        runs: List[List[int]] = []  # [group, first channel, length]
        for s in x.slots:
            g, c = slot_group.get(flow.find(int(s)), (IMAGE, -1)) if s >= 0 else (IMAGE, -1)
            if runs and runs[-1][0] == g and (g == IMAGE or c == runs[-1][1] + runs[-1][2]):
                runs[-1][2] += 1
            else:
                runs.append([g, c, 1])
        for g, c, n in runs:
            if g != IMAGE and (c != 0 or n != len(flow.layer_slots[order[g]])):
                raise NotImplementedError(
                    f"{what}: reads channels {c}..{c + n - 1} of group {found[order[g]]['path']} "
                    f"({len(flow.layer_slots[order[g]])} channels): partial or reordered slices are not supported")
        segs = [(g, n) for g, _, n in runs]
        period = next(p for p in range(1, len(segs) + 1)
                      if len(segs) % p == 0 and segs == segs[:p] * (len(segs) // p))
        return tuple(segs[:period]), len(segs) // period

    for out in outputs:  # what reaches the model's output keeps its width
        if out.slots is not None:
            fix_slots(out.slots[out.slots >= 0])
        if out.opaque:
            fix_slots(out.opaque[1])
    for r in image_roots:
        if r in slot_group:
            fixed[slot_group[r][0]] = True
    layer_inputs = []
    for i, f in enumerate(found):
        keep = f["path"] in keep_full
        layer_inputs.append(segments(flow.layer_in[i], f["in_channels"], f"layer {f['path']}", keep))
        if keep:
            fixed[group_of[i]] = True
        if f["kind"] == "conv" and f["groups"] > 1:
            g_in = single_group(*layer_inputs[-1], f"layer {f['path']}: a grouped conv")
            for g in (g_in, group_of[i]):
                if g != IMAGE:
                    blocks[g] = math.lcm(blocks[g], f["groups"])
    norms = []
    for k, n in enumerate(norm_found):
        width = flow.norm_in[k].slots.shape[0] if flow.norm_in[k].slots is not None else 0
        inputs, repeat = segments(flow.norm_in[k], width, f"normalisation {n['path']}", False)
        if n["kind"] == "group" and n["num_groups"] > 1:
            g_in = single_group(inputs, repeat, f"normalisation {n['path']}: a GroupNorm")
            if g_in != IMAGE:
                blocks[g_in] = math.lcm(blocks[g_in], n["num_groups"])
        norms.append(Norm(n["path"], n["kind"], n["num_groups"], inputs, n["vectors"]))
    groups = tuple(Group(found[r]["path"], tuple(i for i, ri in enumerate(roots) if ri == r),
                         found[r]["out_channels"], fixed[g], blocks[g]) for g, r in enumerate(order))
    layers = tuple(Layer(producers=tuple(sorted(flow.layer_in[i].reached)), group=group_of[i], inputs=inputs,
                         repeat=repeat, **f) for i, (f, (inputs, repeat)) in enumerate(zip(found, layer_inputs)))
    edges = tuple((i, j) for j, layer in enumerate(layers) for i in layer.producers if i != IMAGE)
    return LayerGraph(model_name, tuple(input_shape), layers, edges, groups, tuple(norms), batch_norms)


def single_group(inputs: Segments, repeat: int, what: str) -> int:
    """The one group (or IMAGE) an input laid out as ``inputs`` x ``repeat`` reads; a
    ``NotImplementedError`` naming ``what`` for a concatenated or flattened input."""
    if repeat != 1 or len(inputs) != 1:
        raise NotImplementedError(f"{what} must read one group's channels, not {inputs} x {repeat}")
    return inputs[0][0]


def zoo_graph(spec: ZooSpec, block: str = "plain") -> LayerGraph:
    """The layer graph of ``spec``'s zoo model at ``block`` on its image size."""
    return build_layer_graph(spec.model(block), (1, spec.image_size, spec.image_size, 3), spec.name)
