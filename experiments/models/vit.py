"""A small Vision Transformer, written as a user writes one, twice: in linen with
``nn.MultiHeadDotProductAttention`` (``vit``) and in Flax NNX with ``nnx.MultiHeadAttention``
(``nnx_vit``). Both: a patch-embedding conv, a class token and a learnt position
embedding, pre-norm encoder blocks (LayerNorm -> attention -> residual, LayerNorm -> MLP
-> residual), a final LayerNorm and a linear head on the class token.

Named in configs as ``experiments/models/vit.py:vit`` or ``...:nnx_vit``; Graph Pruning
prunes whole heads of each attention, each MLP's hidden width and, unless a config keeps
it (``config.pruning.keep_full=['embed']``), the embedding width through every residual.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from flax import nnx


class EncoderBlock(nn.Module):
    heads: int
    mlp: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        y = nn.LayerNorm(name="ln1")(x)
        x = x + nn.MultiHeadDotProductAttention(self.heads, name="attention")(y, y, deterministic=not train)
        y = nn.LayerNorm(name="ln2")(x)
        y = nn.Dense(x.shape[-1], name="fc2")(nn.gelu(nn.Dense(self.mlp, name="fc1")(y)))
        return x + y


class ViT(nn.Module):
    num_classes: int = 10
    patch: int = 4
    width: int = 64
    depth: int = 2
    heads: int = 4
    mlp: int = 128

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(self.width, (self.patch, self.patch), self.patch, padding="VALID", name="embed")(x)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        cls = self.param("cls", nn.initializers.zeros, (1, 1, x.shape[-1]))
        x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, x.shape[-1])), x], axis=1)
        x = x + self.param("position", nn.initializers.normal(0.02), (1, x.shape[1], x.shape[-1]))
        for i in range(self.depth):
            x = EncoderBlock(self.heads, self.mlp, name=f"block{i}")(x, train)
        return nn.Dense(self.num_classes, name="head")(nn.LayerNorm(name="norm")(x[:, 0]))


def vit(num_classes: int = 10, **kwargs) -> ViT:
    return ViT(num_classes, **kwargs)


class NNXEncoderBlock(nnx.Module):
    def __init__(self, width: int, heads: int, mlp: int, rngs: nnx.Rngs, **attention):
        self.ln1 = nnx.LayerNorm(width, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(heads, width, decode=False, rngs=rngs, **attention)
        self.ln2 = nnx.LayerNorm(width, rngs=rngs)
        self.fc1 = nnx.Linear(width, mlp, rngs=rngs)
        self.fc2 = nnx.Linear(mlp, width, rngs=rngs)

    def __call__(self, x):
        x = x + self.attention(self.ln1(x))
        return x + self.fc2(nnx.gelu(self.fc1(self.ln2(x))))


class NNXViT(nnx.Module):
    def __init__(self, num_classes: int, rngs: nnx.Rngs, image_size: int = 32, patch: int = 4, width: int = 64,
                 depth: int = 2, heads: int = 4, mlp: int = 128, **attention):
        self.embed = nnx.Conv(3, width, (patch, patch), strides=patch, padding="VALID", rngs=rngs)
        self.cls = nnx.Param(jnp.zeros((1, 1, width)))
        self.position = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (1, (image_size // patch) ** 2 + 1,
                                                                                width)))
        self.blocks = nnx.List([NNXEncoderBlock(width, heads, mlp, rngs, **attention) for _ in range(depth)])
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.head = nnx.Linear(width, num_classes, rngs=rngs)

    def __call__(self, x):
        x = self.embed(x)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        cls = jnp.broadcast_to(self.cls[...], (x.shape[0], 1, x.shape[-1]))
        x = jnp.concatenate([cls, x], axis=1) + self.position[...]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


def nnx_vit(num_classes: int, rngs: nnx.Rngs, **kwargs) -> NNXViT:
    """``kwargs``: the sizes above, and ``nnx.MultiHeadAttention`` options (``attention_fn``)."""
    return NNXViT(num_classes, rngs, **kwargs)
