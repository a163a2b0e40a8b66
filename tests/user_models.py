"""User models that are not in the zoo, written as a user would (plain ints for the
layer sizes, no width argument), for the bring-your-own-model tests. Each is a
``function(num_classes)`` returning a linen module called as ``module(images, train=...)``."""
import flax.linen as nn
import jax.numpy as jnp


def _bn(train):
    return nn.BatchNorm(use_running_average=not train, momentum=0.9)


class TinyUNet(nn.Module):
    """Encoder, a pooled level, nearest upsampling and a skip concatenated with it."""
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        e1 = nn.relu(_bn(train)(nn.Conv(8, (3, 3), use_bias=False, name="enc1")(x)))
        e2 = nn.relu(_bn(train)(nn.Conv(16, (3, 3), use_bias=False, name="enc2")(
            nn.max_pool(e1, (2, 2), (2, 2)))))
        up = jnp.repeat(jnp.repeat(e2, 2, axis=1), 2, axis=2)
        up = nn.relu(nn.Conv(8, (3, 3), name="up")(up))
        d = nn.relu(_bn(train)(nn.Conv(12, (3, 3), use_bias=False, name="dec")(jnp.concatenate([up, e1], -1))))
        return nn.Dense(self.num_classes, name="head")(d.mean(axis=(1, 2)))


class DenseBlockNet(nn.Module):
    """A DenseNet block: each layer reads the concatenation of all earlier outputs."""
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        features = [nn.Conv(8, (3, 3), use_bias=False, name="stem")(x)]
        for i in range(3):
            y = nn.relu(_bn(train)(jnp.concatenate(features, -1)))
            features.append(nn.Conv(4, (3, 3), use_bias=False, name=f"grow{i}")(y))
        y = nn.relu(_bn(train)(jnp.concatenate(features, -1)))
        y = nn.avg_pool(nn.Conv(12, (1, 1), name="transition")(y), (2, 2), (2, 2))
        return nn.Dense(self.num_classes, name="head")(y.mean(axis=(1, 2)))


class FlattenMLP(nn.Module):
    """Two convs, the feature map flattened, then two Dense layers."""
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(_bn(train)(nn.Conv(8, (3, 3), use_bias=False, name="conv1")(x)))
        x = nn.relu(nn.Conv(6, (3, 3), strides=(2, 2), name="conv2")(x))
        x = nn.relu(nn.Dense(32, name="fc1")(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.num_classes, name="fc2")(x)


class TrainByDefault(nn.Module):
    """Conv-BN layers and a residual, called as ``module(x, train=True)`` unless told
    otherwise: the common Flax convention (eval only when asked)."""
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.relu(_bn(train)(nn.Conv(8, (3, 3), use_bias=False, name="stem")(x)))
        y = nn.relu(_bn(train)(nn.Conv(12, (3, 3), use_bias=False, name="conv1")(x)))
        y = _bn(train)(nn.Conv(8, (3, 3), use_bias=False, name="conv2")(y))
        x = nn.relu(x + y)
        return nn.Dense(self.num_classes, name="head")(x.mean(axis=(1, 2)))


class GroupedGN(nn.Module):
    """Grouped and depthwise convs with GroupNorm, and a residual addition."""
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.GroupNorm(num_groups=4, name="gn1")(nn.Conv(16, (3, 3), name="conv1")(x)))
        y = nn.relu(nn.GroupNorm(num_groups=2, name="gn2")(
            nn.Conv(8, (3, 3), feature_group_count=4, name="grouped")(x)))
        y = nn.Conv(8, (3, 3), feature_group_count=8, name="depthwise")(y)
        y = y + nn.Conv(8, (1, 1), feature_group_count=2, name="shortcut")(x)
        y = nn.LayerNorm(name="ln")(nn.relu(y))
        return nn.Dense(self.num_classes, name="head")(y.mean(axis=(1, 2)))


def tiny_unet(num_classes=10):
    return TinyUNet(num_classes)


def dense_block_net(num_classes=10):
    return DenseBlockNet(num_classes)


def flatten_mlp(num_classes=10):
    return FlattenMLP(num_classes)


def grouped_gn(num_classes=10):
    return GroupedGN(num_classes)


def train_by_default(num_classes=10):
    return TrainByDefault(num_classes)


class ScaledHead(nn.Module):
    """A learnt scalar temperature on the logits: a parameter of no layer, with no channels."""
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(8, (3, 3), name="conv")(x))
        return nn.Dense(self.num_classes, name="head")(x.mean(axis=(1, 2))) * self.param("temperature", nn.initializers.ones, ())


def scaled_head(num_classes=10):
    return ScaledHead(num_classes)
