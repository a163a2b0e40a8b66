"""``build_layer_graph``: trace a model, run the channel pass, and turn the united slots
into coupled groups and each layer's and normalisation's input segments."""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import flax.linen as nn
import jax

from nas_jax.models.network import ZooSpec
from nas_jax.pruning.graph.channel_flow import ChannelFlow, UnionFind
from nas_jax.pruning.graph.layers import (IMAGE, Attention, FreeParam, Group, Layer, LayerGraph, Norm, Segments,
                                          single_group)
from nas_jax.pruning.graph.op_rules import NONE, Value
from nas_jax.pruning.graph.trace import trace_layers


def build_layer_graph(model: nn.Module, input_shape: Sequence[int] = (1, 224, 224, 3), model_name: str = "",
                      keep_full: Sequence[str] = ()) -> LayerGraph:
    """The layer graph of ``model`` (any linen model called as ``model(x, train=...)``;
    a zoo model in any form: plain, dbb, repnas, deploy) on NHWC inputs of
    ``input_shape``. ``keep_full``: paths of layers kept at full width (and whatever feeds
    them through an op the graph cannot follow). Raises ``NotImplementedError`` naming the
    layer and the op for a structure it cannot prune."""
    name = model_name or type(model).__name__
    found, norm_found, attention_found, batch_norms, variables, jaxpr = trace_layers(model, input_shape)
    if not found:
        raise NotImplementedError(f"model {name}: no conv or dense layers were found (the graph sees flax.linen "
                                  "nn.Conv / nn.Dense / nn.DenseGeneral and nas_jax.rep blocks, and the standard "
                                  "layers of an NNX model run by nas_jax: for an NNX model, also one under "
                                  "nnx.bridge.to_linen, name its function (with an `rngs` parameter) in config.model)")
    unknown = sorted(set(keep_full) - {f["path"] for f in found})
    if unknown:
        raise ValueError(f"keep_full names {unknown}, which are no layers of {name}; its layers are "
                         f"{[f['path'] for f in found]}")
    flow = ChannelFlow()
    free = free_param_slots(flow, variables, [f["path"] for f in found] + [n["path"] for n in norm_found])
    image = flow.grow(input_shape[-1])
    outputs = flow.run(jaxpr, [free.get(path, (NONE,))[0] for path in variable_paths(variables)]
                       + [Value(image, None, frozenset([IMAGE]))])
    missing = [f["path"] for i, f in enumerate(found) if i not in flow.layer_in or i not in flow.layer_slots]
    if missing:
        raise RuntimeError(f"layers {missing} were not reached in the traced forward pass")
    attentions = [join_heads(flow, a, found) for a in attention_found]
    for i, f in enumerate(found):  # a depthwise conv's channel c is its input's channel c
        x = flow.layer_in[i]
        if f["kind"] == "depthwise" and x.slots is not None and not x.opaque:
            for s, t in zip(x.slots, flow.layer_slots[i]):
                if s >= 0:
                    flow.union(int(s), int(t))

    # layers united channel by channel form a group
    layer_groups = UnionFind(len(found))
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
    units = [1] * len(order)
    for a in attentions:
        units[group_of[a.query]] = math.lcm(units[group_of[a.query]], a.head_dim)

    def fix_slots(slots) -> None:
        for s in slots:
            r = flow.find(int(s))
            if r in slot_group:
                fixed[slot_group[r][0]] = True

    def segments(x: Value, width: int, what: str, keep: bool) -> Tuple[Segments, int]:
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
                         found[r]["out_channels"], fixed[g], blocks[g], units[g]) for g, r in enumerate(order))
    free_params = tuple(free_param_group(flow, path, entry, slot_group) for path, entry in free.items())
    layers = tuple(Layer(producers=tuple(sorted(flow.layer_in[i].reached)), group=group_of[i], inputs=inputs,
                         repeat=repeat, **f) for i, (f, (inputs, repeat)) in enumerate(zip(found, layer_inputs)))
    edges = tuple((i, j) for j, layer in enumerate(layers) for i in layer.producers if i != IMAGE)
    return LayerGraph(model_name, tuple(input_shape), layers, edges, groups, tuple(norms), batch_norms,
                      tuple(attentions), free_params)


def variable_paths(variables) -> List[str]:
    """The ``/``-joined paths of ``variables``' leaves in flattening order (the traced
    jaxpr's inputs)."""
    return ["/".join(str(getattr(k, "key", k)) for k in path)
            for path, _ in jax.tree_util.tree_flatten_with_path(variables)[0]]


def free_param_slots(flow: ChannelFlow, variables, owners: Sequence[str]) -> Dict[str, Tuple[Value, int]]:
    """``{path: (value with new slots on its last axis, entries per channel)}`` for every
    parameter under no layer or normalisation path in ``owners``."""
    free = {}
    for path, leaf in zip(variable_paths(variables), jax.tree_util.tree_leaves(variables)):
        collection, _, rest = path.partition("/")
        owned = any(rest == o or rest.startswith(o + "/") for o in owners)
        if collection == "params" and not owned:  # a scalar: no channels (never pruned)
            free[path] = (Value(flow.grow(leaf.shape[-1])) if leaf.ndim else NONE, math.prod(leaf.shape[:-1]))
    return free


def free_param_group(flow: ChannelFlow, path: str, free: Tuple[Value, int], slot_group) -> FreeParam:
    """The group whose channels a free parameter's last axis carries (IMAGE: none), or a
    ``NotImplementedError`` for a parameter that meets a group out of channel order."""
    value, size = free
    if value.slots is None:
        return FreeParam(path.partition("/")[2], IMAGE, 1, 1)
    places = [slot_group.get(flow.find(int(s)), (IMAGE, -1)) for s in value.slots]
    groups = {g for g, _ in places}
    if groups == {IMAGE}:
        return FreeParam(path.partition("/")[2], IMAGE, len(places), size)
    g = places[0][0]
    if len(groups) > 1 or [c for _, c in places] != list(range(len(places))):
        raise NotImplementedError(f"parameter {path} is added to the channels of groups {sorted(groups)} out of "
                                  "channel order: not supported")
    return FreeParam(path.partition("/")[2], g, len(places), size)


def join_heads(flow: ChannelFlow, record: dict, found: Sequence[dict]) -> Attention:
    """The attention of a traced record: its query, key and value output channels united
    (one group, head by head), and its out projection reading them (its input was the
    opaque attention product)."""
    roles = record["roles"]
    missing = [r for r in ("query", "key", "value", "out") if r not in roles]
    if missing:
        raise NotImplementedError(f"attention {record['path']}: projections {missing} were not called as layers")
    q, k, v, o = (roles[r] for r in ("query", "key", "value", "out"))
    for a, b, c in zip(flow.layer_slots[q], flow.layer_slots[k], flow.layer_slots[v]):
        flow.union(int(a), int(b))
        flow.union(int(a), int(c))
    flow.layer_in[o] = Value(flow.layer_slots[q], None, frozenset([q, k, v]))
    heads = record["heads"]
    return Attention(record["path"], q, k, v, o, heads, found[q]["out_channels"] // heads, record["queries"],
                     record["keys"])


def zoo_graph(spec: ZooSpec, block: str = "plain") -> LayerGraph:
    """The layer graph of ``spec``'s zoo model at ``block`` on its image size."""
    return build_layer_graph(spec.model(block), (1, spec.image_size, spec.image_size, 3), spec.name)
