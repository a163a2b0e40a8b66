"""The layer graph of a model: its conv and dense layers, the data flow between them,
which layers must share one output width (coupled groups), and which channels of which
groups every layer and normalisation reads.

Tracing (``build_layer_graph``, ``trace.py``): the model's forward pass is traced once with
``jax.make_jaxpr`` on abstract variables while ``flax.linen.intercept_methods`` wraps every
top-level layer call (conv-BN, DBB, RepNAS, deploy conv, ``nn.Conv``, ``nn.Dense``; a
layer nested in another, such as a DBB's branches, is part of its parent) and every
top-level normalisation (``nn.BatchNorm``, ``nn.LayerNorm``, ``nn.GroupNorm``, a BatchNorm of
another package: ``norm_kind``). The interceptor tags their inputs and outputs with
``checkpoint_name``, which appear in the jaxpr as ``name`` equations.

Channel flow (``channel_flow.py``; what each primitive does is one rule of
``op_rules.RULES``): a pass over the jaxpr gives every value a *slot* per entry of its last
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

Groups (``build.py``): layers whose output slots were united (a residual addition; a depthwise conv and
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
from nas_jax.pruning.graph.build import build_layer_graph, zoo_graph
from nas_jax.pruning.graph.layers import (IMAGE, KINDS, Attention, FreeParam, Group, Layer, LayerGraph, Norm, Segments, channel_mask,
                                          kept_channels, single_group)
from nas_jax.pruning.graph.trace import LAYER_TYPES, intercept_layers, norm_kind

__all__ = ["build_layer_graph", "zoo_graph", "IMAGE", "KINDS", "Attention", "FreeParam", "Group", "Layer", "LayerGraph", "Norm", "Segments",
           "channel_mask", "kept_channels", "single_group", "LAYER_TYPES", "intercept_layers", "norm_kind"]
