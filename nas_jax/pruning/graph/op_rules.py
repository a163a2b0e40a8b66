"""The channel-flow rules, one per primitive: what each jaxpr op does to the channel slots
of its inputs (see ``nas_jax.pruning.graph``'s module doc for slots, opaque values and
groups).

A rule takes the pass (``ChannelFlow``, for ``elementwise``, which unites slots) and the
op (``Op``) and returns the ``Value`` of every output. ``RULES`` maps a primitive's name
to its rule; a primitive not in it is ``elementwise`` when every input that carries
channels has the output's shape (or is a scalar), else ``opaque``. Supporting a new
primitive is one entry here, with a case in the brute-force test
(``tests/test_pruning_graph.py``).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class Value:
    """What the channel pass knows of a traced value: ``slots`` [last dim] (``-1``: no
    source) or None (computed from parameters and constants only); ``opaque``: the op that
    mixed its channels and the slots it mixed; ``reached``: the layers (IMAGE) it comes from."""
    slots: Optional[np.ndarray] = None
    opaque: Optional[Tuple[str, frozenset]] = None
    reached: frozenset = frozenset()


NONE = Value()


@dataclasses.dataclass(frozen=True)
class Op:
    """One jaxpr equation as a rule sees it: primitive ``name``, ``params``, the input
    ``values`` and the shapes of its first input and first output."""
    name: str
    params: dict
    values: Sequence[Value]
    in_shapes: Tuple[Tuple[int, ...], ...]
    out_shape: Tuple[int, ...]

    @property
    def x(self) -> Value:
        return self.values[0]

    @property
    def in_shape(self) -> Tuple[int, ...]:
        return self.in_shapes[0]

    @property
    def width(self) -> int:
        """The output's channel count (0 for a scalar)."""
        return self.out_shape[-1] if self.out_shape else 0

    @property
    def keeps_width(self) -> bool:
        """Whether the first input and the output have the same channel count."""
        return bool(self.in_shape and self.out_shape and self.in_shape[-1] == self.out_shape[-1])


def opaque(op: str, values: Sequence[Value]) -> Value:
    """The value of an op that mixes the channels of ``values``: opaque, remembering the
    first op that mixed and every slot mixed."""
    slots = frozenset().union(*(frozenset(int(s) for s in v.slots if s >= 0) for v in values
                                if v.slots is not None),
                              *(v.opaque[1] for v in values if v.opaque))
    reached = frozenset().union(*(v.reached for v in values))
    if not slots and not any(v.opaque for v in values):
        return Value(reached=reached)
    first = next((v.opaque[0] for v in values if v.opaque), op)
    return Value(opaque=(first, slots), reached=reached)


Rule = Callable[[object, Op], Value]  # (the ChannelFlow of channel_flow.py, the op) -> the outputs' value


def mixes_channels(flow, op: Op) -> Value:
    return opaque(op.name, op.values)


def default(flow, op: Op) -> Value:
    """Elementwise when every input with channels has the output's shape or is a scalar."""
    if all(shape in (op.out_shape, ()) for shape, v in zip(op.in_shapes, op.values) if v.slots is not None):
        return flow.elementwise(op.values, op.width)
    return opaque(op.name, op.values)


def concatenate(flow, op: Op) -> Value:
    if op.params["dimension"] != len(op.out_shape) - 1:
        return flow.elementwise(op.values, op.width)
    if any(v.opaque for v in op.values):
        return opaque(op.name, op.values)
    parts = [v.slots if v.slots is not None else np.full(shape[-1], -1) for v, shape in zip(op.values, op.in_shapes)]
    return Value(np.concatenate(parts), None, frozenset().union(*(v.reached for v in op.values)))


def reshape(flow, op: Op) -> Value:
    """Keeps the channel axis, or flattens it with others (channel fastest: tiled slots)."""
    if op.keeps_width:
        return op.x
    if op.x.slots is not None and op.in_shape and op.out_shape and op.out_shape[-1] % op.in_shape[-1] == 0:
        return Value(np.tile(op.x.slots, op.out_shape[-1] // op.in_shape[-1]), None, op.x.reached)
    return opaque("reshape over the channel axis", op.values)


def broadcast_in_dim(flow, op: Op) -> Value:
    dims = op.params["broadcast_dimensions"]
    if op.in_shape and dims[-1] == len(op.out_shape) - 1 and op.in_shape[-1] == op.width:
        return op.x
    if not op.in_shape or (op.in_shape[-1] == 1 and dims[-1] == len(op.out_shape) - 1):
        return Value(reached=op.x.reached)  # one value spread over all channels (a gate)
    return opaque(op.name, op.values)


def transpose(flow, op: Op) -> Value:
    perm = op.params["permutation"]
    return op.x if perm[-1] == len(perm) - 1 else opaque("transpose of the channel axis", op.values)


def reduction(flow, op: Op) -> Value:
    """A reduction (or arg-reduction) over ``axes``: opaque when the channel axis is one."""
    return opaque(f"{op.name} over the channel axis", op.values) if len(op.in_shape) - 1 in op.params["axes"] else op.x


def window_reduction(flow, op: Op) -> Value:
    """Pooling: channelwise when its window spans one channel."""
    return op.x if op.params["window_dimensions"][-1] == 1 else opaque(op.name, op.values)


def pad(flow, op: Op) -> Value:
    config = op.params["padding_config"][-1]
    return op.x if tuple(config) == (0, 0, 0) else opaque("padding of the channel axis", op.values)


def slice_(flow, op: Op) -> Value:
    start, limit = op.params["start_indices"][-1], op.params["limit_indices"][-1]
    step = (op.params["strides"] or [1] * len(op.in_shape))[-1]
    return Value(op.x.slots[start:limit:step], None, op.x.reached) if op.x.slots is not None else op.x


def rev(flow, op: Op) -> Value:
    if len(op.in_shape) - 1 in op.params["dimensions"]:
        return opaque("reversal of the channel axis", op.values)
    return op.x


def keeps_channels(flow, op: Op) -> Value:
    """An op that changes other axes only (squeeze, expand_dims, copy)."""
    return op.x if op.keeps_width else default(flow, op)


RULES: Dict[str, Rule] = {
    **{name: mixes_channels for name in (
        "dot_general", "conv_general_dilated", "cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp", "sort",
        "fft", "gather", "scatter", "scatter-add", "scatter_add", "dynamic_slice", "dynamic_update_slice",
        "argsort", "top_k")},
    **{name: reduction for name in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_and",
                                    "reduce_or", "reduce_xor", "argmax", "argmin")},
    **{name: window_reduction for name in ("reduce_window", "reduce_window_sum", "reduce_window_max",
                                           "reduce_window_min")},
    **{name: keeps_channels for name in ("squeeze", "expand_dims", "copy", "copy_p")},
    "concatenate": concatenate,
    "reshape": reshape,
    "broadcast_in_dim": broadcast_in_dim,
    "transpose": transpose,
    "pad": pad,
    "slice": slice_,
    "rev": rev,
}
