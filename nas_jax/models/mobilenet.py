"""MobileNetV1 as in the official DBB code, and MobileNetV2 (the pruning papers' backbone)."""
from __future__ import annotations

from typing import Optional

import flax.linen as nn

from nas_jax.models.conv_blocks import BlockSpec, ZooModel, classify, conv_block

# conv1, then (depthwise width, pointwise width) for each of the 13 blocks
MOBILENET_V1_CHANNELS = (32, 32, 64, 64, 128, 128, 128, 128, 256, 256, 256, 256) + (512,) * 12 + (1024,) * 3
MOBILENET_V1_STRIDE2_BLOCKS = (1, 3, 5, 11)


class MobileNetV1Block(nn.Module):
    """``depthwise`` 3x3 (as wide as its input; ``in_channels`` is the nominal input width)
    -> ``pointwise`` 1x1."""
    in_channels: int
    out_channels: int
    strides: int
    spec: BlockSpec

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(conv_block(self.spec, self, x.shape[-1], 3, self.strides, x.shape[-1],
                               name="depthwise")(x, train))
        return nn.relu(conv_block(self.spec, self, self.out_channels, 1, name="pointwise")(x, train))


class MobileNetV1(ZooModel):
    """``conv1`` (3x3, stride 2), ``stem_0`` .. ``stem_12`` depthwise-separable blocks, ``linear``."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        spec = self.block_spec()
        ch = [max(1, int(c * self.width)) for c in MOBILENET_V1_CHANNELS]
        x = nn.relu(conv_block(spec, self, ch[0], 3, 2, name="conv1")(x.astype(self.dtype or x.dtype), train))
        for i in range(13):
            x = MobileNetV1Block(ch[1 + 2 * i], ch[2 + 2 * i], 2 if i in MOBILENET_V1_STRIDE2_BLOCKS else 1,
                                 spec, name=f"stem_{i}")(x, train)
        return classify(x, self.num_classes, self.dtype)


# (expansion t, channels c, repeats n, first stride s), as in the MobileNetV2 paper
MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                         (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _divisible(v, divisor=8):
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class InvertedResidual(nn.Module):
    """``expand`` 1x1 (absent when t = 1) -> ``depthwise`` 3x3 (as wide as its input) ->
    ``project`` 1x1 (linear). ``in_channels``: the nominal input width (default: the input's
    width), which decides the block's structure when the spec overrides widths."""
    hidden: int
    out_channels: int
    strides: int
    spec: BlockSpec
    in_channels: Optional[int] = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        in_channels = x.shape[-1] if self.in_channels is None else self.in_channels
        y = x
        if self.hidden != in_channels:
            y = nn.relu6(conv_block(self.spec, self, self.hidden, 1, name="expand")(y, train))
        y = nn.relu6(conv_block(self.spec, self, y.shape[-1], 3, self.strides, y.shape[-1],
                                name="depthwise")(y, train))
        y = conv_block(self.spec, self, self.out_channels, 1, name="project")(y, train)
        return x + y if self.strides == 1 and in_channels == self.out_channels else y


class MobileNetV2(ZooModel):
    """``features_0`` (3x3 stride 2), ``features_1`` .. ``features_17`` inverted residuals,
    ``features_18`` (1x1 to 1280), ``linear``; widths rounded to multiples of 8."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        spec = self.block_spec()
        c_in = _divisible(32 * self.width)
        x = nn.relu6(conv_block(spec, self, c_in, 3, 2, name="features_0")(x.astype(self.dtype or x.dtype), train))
        idx = 1
        for t, c, n, s in MOBILENET_V2_SETTINGS:
            c_out = _divisible(c * self.width)
            for i in range(n):
                x = InvertedResidual(c_in * t, c_out, s if i == 0 else 1, spec, c_in,
                                     name=f"features_{idx}")(x, train)
                c_in, idx = c_out, idx + 1
        last = _divisible(1280 * max(1.0, self.width))
        x = nn.relu6(conv_block(spec, self, last, 1, name=f"features_{idx}")(x, train))
        return classify(x, self.num_classes, self.dtype)
