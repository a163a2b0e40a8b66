"""A small CNN written in Flax NNX, as a user writes one: conv-BatchNorm residual blocks,
a strided stage whose shortcut is a 1x1 conv, global average pooling and a linear head.
Named in configs as ``experiments/models/nnx_cnn.py:nnx_cnn``; nas_jax runs it through
``nas_jax.models.nnx_model.NNXModel``, prunes it and exports the same class, smaller.
"""
from __future__ import annotations

from flax import nnx


class ResidualBlock(nnx.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(c_in, c_out, (3, 3), strides=stride, use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs)
        self.conv2 = nnx.Conv(c_out, c_out, (3, 3), use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs)
        self.shortcut = (nnx.Conv(c_in, c_out, (1, 1), strides=stride, use_bias=False, rngs=rngs)
                         if stride != 1 or c_in != c_out else None)

    def __call__(self, x):
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return nnx.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class NNXCNN(nnx.Module):
    def __init__(self, num_classes: int, rngs: nnx.Rngs, width: int = 16):
        self.stem = nnx.Conv(3, width, (3, 3), use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
        self.blocks = nnx.List([ResidualBlock(width, width, 1, rngs), ResidualBlock(width, 2 * width, 2, rngs),
                                ResidualBlock(2 * width, 4 * width, 2, rngs)])
        self.head = nnx.Linear(4 * width, num_classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(axis=(1, 2)))


def nnx_cnn(num_classes: int, rngs: nnx.Rngs, width: int = 16) -> NNXCNN:
    return NNXCNN(num_classes, rngs, width)
