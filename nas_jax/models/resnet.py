"""ResNet-18/34/50 as in the official DBB code (``stage0`` = 7x7 conv + max pool,
``stage{1..4}_{i}`` blocks, a ``linear`` classifier)."""
from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from nas_jax.models.conv_blocks import BlockSpec, ZooModel, classify, conv_block
from nas_jax.models.pooling import max_pool


class BasicBlock(nn.Module):
    """``in_channels``: the nominal input width (default: the input's width), which decides
    whether the block has a ``shortcut`` conv when the spec overrides widths."""
    planes: int
    strides: int
    spec: BlockSpec
    in_channels: Optional[int] = None
    expansion = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        out = nn.relu(conv_block(self.spec, self, self.planes, 3, self.strides, name="conv1")(x, train))
        out = conv_block(self.spec, self, self.planes, 3, 1, name="conv2")(out, train)
        return nn.relu(out + _shortcut(self, x, self.planes, train))


class Bottleneck(nn.Module):
    """``in_channels``: the nominal input width (default: the input's width), which decides
    whether the block has a ``shortcut`` conv when the spec overrides widths."""
    planes: int
    strides: int
    spec: BlockSpec
    in_channels: Optional[int] = None
    expansion = 4

    @nn.compact
    def __call__(self, x, train: bool = False):
        out = nn.relu(conv_block(self.spec, self, self.planes, 1, name="conv1")(x, train))
        out = nn.relu(conv_block(self.spec, self, self.planes, 3, self.strides, name="conv2")(out, train))
        out = conv_block(self.spec, self, self.planes * 4, 1, name="conv3")(out, train)
        return nn.relu(out + _shortcut(self, x, self.planes * 4, train))


def _shortcut(block, x, out_channels, train):
    in_channels = x.shape[-1] if block.in_channels is None else block.in_channels
    if block.strides == 1 and in_channels == out_channels:
        return x
    return conv_block(block.spec, block, out_channels, 1, block.strides, name="shortcut")(x, train)


class ResNetStem(nn.Module):
    features: int
    spec: BlockSpec

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(conv_block(self.spec, self, self.features, 7, 2, name="conv1")(x, train))
        # padded by hand (-inf, as PyTorch's max pool pads): jax2onnx drops max_pool's own padding
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
        return max_pool(x, 3, 2)


class ResNet(ZooModel):
    """Input NHWC, any size >= 32; ``width`` scales every stage (0.25 -> 16..128 channels)."""
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    bottleneck: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        spec = self.block_spec()
        block_cls = Bottleneck if self.bottleneck else BasicBlock
        c_in = int(64 * self.width)
        x = ResNetStem(c_in, spec, name="stage0")(x.astype(self.dtype or x.dtype), train)
        for s, n in enumerate(self.stage_sizes):
            for i in range(n):
                planes = int(64 * 2 ** s * self.width)
                x = block_cls(planes, 2 if (i == 0 and s > 0) else 1, spec, c_in,
                              name=f"stage{s + 1}_{i}")(x, train)
                c_in = planes * block_cls.expansion
        return classify(x, self.num_classes, self.dtype)
