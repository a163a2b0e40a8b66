"""Flax NNX models written as a user would, for the NNX tests: each is a
``function(num_classes, rngs)`` returning an ``nnx.Module`` called as ``module(images)``."""
import jax.numpy as jnp
from flax import nnx


class ResidualCNN(nnx.Module):
    """A stem conv-BN, one residual block (conv-BN-relu-conv-BN + identity), a strided conv,
    global average pooling and a linear head."""

    def __init__(self, num_classes, rngs):
        self.stem = nnx.Conv(3, 8, (3, 3), use_bias=False, rngs=rngs)
        self.bn0 = nnx.BatchNorm(8, rngs=rngs)
        self.conv1 = nnx.Conv(8, 6, (3, 3), use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(6, rngs=rngs)
        self.conv2 = nnx.Conv(6, 8, (3, 3), use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(8, rngs=rngs)
        self.down = nnx.Conv(8, 12, (3, 3), strides=2, rngs=rngs)
        self.head = nnx.Linear(12, num_classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn0(self.stem(x)))
        x = nnx.relu(x + self.bn2(self.conv2(nnx.relu(self.bn1(self.conv1(x))))))
        return self.head(nnx.relu(self.down(x)).mean(axis=(1, 2)))


class ConcatNet(nnx.Module):
    """Two branches concatenated on the channel axis, a 1x1 conv, a depthwise conv, a
    GroupNorm and a flatten before the head."""

    def __init__(self, num_classes, rngs):
        self.left = nnx.Conv(3, 6, (3, 3), strides=2, rngs=rngs)
        self.right = nnx.Conv(3, 4, (1, 1), strides=2, rngs=rngs)
        self.mix = nnx.Conv(10, 8, (1, 1), rngs=rngs)
        self.depthwise = nnx.Conv(8, 8, (3, 3), feature_group_count=8, rngs=rngs)
        self.norm = nnx.GroupNorm(8, num_groups=2, rngs=rngs)
        self.head = nnx.Linear(8 * 4 * 4, num_classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(jnp.concatenate([self.left(x), self.right(x)], axis=-1))
        x = self.norm(self.depthwise(nnx.relu(self.mix(x))))
        x = x[:, ::2, ::2]
        return self.head(x.reshape(x.shape[0], -1))


def residual_cnn(num_classes, rngs):
    return ResidualCNN(num_classes, rngs)


def concat_net(num_classes, rngs):
    return ConcatNet(num_classes, rngs)


class NeedsTrain(nnx.Module):
    """Takes the mode as an argument instead of ``model.train()`` / ``model.eval()``."""

    def __init__(self, num_classes, rngs):
        self.head = nnx.Linear(3, num_classes, rngs=rngs)

    def __call__(self, x, train):
        return self.head(x.mean(axis=(1, 2)))


def needs_train(num_classes, rngs):
    return NeedsTrain(num_classes, rngs)


class EinsumAttention(nnx.Module):
    """Self-attention written by hand: its product between activations is no layer."""

    def __init__(self, num_classes, rngs):
        self.embed = nnx.Conv(3, 8, (4, 4), strides=4, rngs=rngs)
        self.query, self.key, self.value = (nnx.Linear(8, 8, rngs=rngs) for _ in range(3))
        self.head = nnx.Linear(8, num_classes, rngs=rngs)

    def __call__(self, x):
        x = self.embed(x)
        x = x.reshape(x.shape[0], -1, 8)
        q, k, v = self.query(x), self.key(x), self.value(x)
        weights = nnx.softmax(jnp.einsum("bqc,bkc->bqk", q, k), axis=-1)
        return self.head(jnp.einsum("bqk,bkc->bqc", weights, v).mean(axis=1))


def einsum_attention(num_classes, rngs):
    return EinsumAttention(num_classes, rngs)


class DropoutNet(nnx.Module):
    """A conv, dropout and a linear head."""

    def __init__(self, num_classes, rngs):
        self.conv = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.head = nnx.Linear(8, num_classes, rngs=rngs)

    def __call__(self, x):
        return self.head(self.dropout(nnx.relu(self.conv(x))).mean(axis=(1, 2)))


def dropout_net(num_classes, rngs):
    return DropoutNet(num_classes, rngs)


class CustomDotLinear(nnx.Module):
    """A linear head with its own dot_general, which has no linen twin."""

    def __init__(self, num_classes, rngs):
        self.head = nnx.Linear(3, num_classes, dot_general=lambda *a, **k: __import__("jax").lax.dot_general(*a, **k),
                               rngs=rngs)

    def __call__(self, x):
        return self.head(x.mean(axis=(1, 2)))


def custom_dot_linear(num_classes, rngs):
    return CustomDotLinear(num_classes, rngs)
