"""RepVGG A0..B3 bodies as in the official RepNAS supernet: a flat list of 3x3 layers
``features_0`` .. ``features_N`` (the first of each stage with stride 2), then ``linear``."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn

from nas_jax.models.conv_blocks import ZooModel, classify, conv_block

REPVGG_CONFIGS = {  # name: (blocks per stage, width multipliers per stage)
    "a0": ((2, 4, 14, 1), (0.75, 0.75, 0.75, 2.5)),
    "a1": ((2, 4, 14, 1), (1, 1, 1, 2.5)),
    "a2": ((2, 4, 14, 1), (1.5, 1.5, 1.5, 2.75)),
    "b0": ((4, 6, 16, 1), (1, 1, 1, 2.5)),
    "b1": ((4, 6, 16, 1), (2, 2, 2, 4)),
    "b2": ((4, 6, 16, 1), (2.5, 2.5, 2.5, 5)),
    "b3": ((4, 6, 16, 1), (3, 3, 3, 5)),
}


class RepVGG(ZooModel):
    """``width`` scales all widths on top of the variant's multipliers."""
    stage_sizes: Sequence[int] = REPVGG_CONFIGS["a0"][0]
    stage_widths: Sequence[float] = REPVGG_CONFIGS["a0"][1]

    @nn.compact
    def __call__(self, x, train: bool = False):
        spec = self.block_spec()
        x = x.astype(self.dtype or x.dtype)
        widths = [max(1, int(64 * (2 ** s) * m * self.width)) for s, m in enumerate(self.stage_widths)]
        layer = 0
        x = nn.relu(conv_block(spec, self, min(int(64 * self.width), widths[0]), 3, 2, name="features_0")(x, train))
        for n, c in zip(self.stage_sizes, widths):
            for i in range(n):
                layer += 1
                x = nn.relu(conv_block(spec, self, c, 3, 2 if i == 0 else 1, name=f"features_{layer}")(x, train))
        return classify(x, self.num_classes, self.dtype)
