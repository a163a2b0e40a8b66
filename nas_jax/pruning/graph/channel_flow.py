"""The channel pass over a tagged jaxpr: every value's channel slots, united where ops
combine channels elementwise (see ``nas_jax.pruning.graph``'s module doc); what each
primitive does is its rule in ``op_rules.RULES``."""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
from jax.extend import core as jex_core

from nas_jax.pruning.graph.op_rules import NONE, RULES, Op, Value, default, opaque


class UnionFind:
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


class ChannelFlow(UnionFind):
    """The pass: ``run(jaxpr, inputs)`` gives the ``Value`` of every output and records,
    from the tags, each layer's input (``layer_in``), its new output slots
    (``layer_slots``) and each normalisation's input (``norm_in``)."""

    def __init__(self):
        super().__init__()
        self.layer_slots: Dict[int, np.ndarray] = {}
        self.layer_in: Dict[int, Value] = {}
        self.norm_in: Dict[int, Value] = {}

    def elementwise(self, values: Sequence[Value], width: int) -> Value:
        """The value of an op combining ``values`` channel by channel: their slots united."""
        if any(v.opaque for v in values):
            return opaque("", values)
        reached = frozenset().union(*(v.reached for v in values))
        arrays = [v.slots for v in values if v.slots is not None and v.slots.shape[0] == width]
        if not arrays:
            return Value(reached=reached)
        out = arrays[0].copy()
        for a in arrays[1:]:
            both = (out >= 0) & (a >= 0)
            for s, t in zip(out[both], a[both]):
                self.union(int(s), int(t))
            out = np.where(out >= 0, out, a)
        return Value(out, None, reached)

    def _apply(self, eqn, values: List[Value]) -> List[Value]:
        outs = len(eqn.outvars)
        sub = next((p for p in eqn.params.values() if isinstance(p, (jex_core.ClosedJaxpr, jex_core.Jaxpr))
                    and len((p.jaxpr if isinstance(p, jex_core.ClosedJaxpr) else p).invars) == len(values)), None)
        if sub is not None:  # pjit, custom_jvp, remat, ...: the pass goes inside
            return self.run(sub.jaxpr if isinstance(sub, jex_core.ClosedJaxpr) else sub, values)
        op = Op(eqn.primitive.name, eqn.params, values,
                tuple(tuple(getattr(v.aval, "shape", ())) for v in eqn.invars),
                tuple(getattr(eqn.outvars[0].aval, "shape", ())))
        if op.name == "name":
            return [self._tag(op.params["name"], op.x, op.width)]
        if all(v.slots is None and not v.opaque for v in values):
            return [Value(reached=frozenset().union(*(v.reached for v in values)))] * outs
        if op.x.opaque and op.name != "concatenate":
            return [opaque(op.name, values)] * outs
        out = RULES.get(op.name, default)(self, op)
        if out.opaque and not out.reached:  # parameters mixed among themselves: a constant to the pass
            out = Value()
        return [out] * outs

    def _tag(self, tag: str, x: Value, width: int) -> Value:
        kind, index = tag.split(":")
        index = int(index)
        if kind == "in":
            self.layer_in[index] = x
            return x
        if kind == "out":
            self.layer_slots[index] = self.grow(width)
            return Value(self.layer_slots[index], None, frozenset([index]))
        if kind == "nin":
            self.norm_in[index] = x
            return x
        if kind == "nout":
            return self.norm_in[index]
        return x

    def run(self, jaxpr, inputs: Sequence[Value]) -> List[Value]:
        env: Dict = dict(zip(jaxpr.invars, inputs))
        read = lambda v: env.get(v, NONE) if isinstance(v, jex_core.Var) else NONE  # noqa: E731
        for eqn in jaxpr.eqns:
            for var, value in zip(eqn.outvars, self._apply(eqn, [read(v) for v in eqn.invars])):
                env[var] = value
        return [read(v) for v in jaxpr.outvars]
