"""Which zoo model a pruning run works on, and its layer graph."""
from __future__ import annotations

import dataclasses
from typing import Tuple

import flax.linen as nn

from nas_jax.models import create_model
from nas_jax.pruning.graph import LayerGraph, build_layer_graph


@dataclasses.dataclass(frozen=True)
class ZooSpec:
    """A zoo model by ``name`` at ``width`` with ``num_classes`` outputs, on square NHWC
    images of ``image_size`` (FLOPs depend on it)."""
    name: str
    num_classes: int = 1000
    width: float = 1.0
    image_size: int = 224

    def model(self, block: str = "plain", widths: Tuple[Tuple[str, int], ...] = ()) -> nn.Module:
        """The zoo model; ``widths`` overrides layer output widths (a pruned network)."""
        return create_model(self.name, block=block, num_classes=self.num_classes, width=self.width,
                            widths=tuple(widths))

    def graph(self, block: str = "plain") -> LayerGraph:
        return build_layer_graph(self.model(block), (1, self.image_size, self.image_size, 3), self.name)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> "ZooSpec":
        return cls(**{f.name: doc[f.name] for f in dataclasses.fields(cls)})
