"""Linen models from PyPI packages nobody here wrote, as a user names them in
``--config.model`` (the ``external`` extra of ``setup.py`` installs the packages):

* flaxmodels' ResNet18: ``__call__(x, train=True)`` (eval only when asked) and a
  BatchNorm class of its own, not ``flax.linen.BatchNorm``. Its widths (64-512) are fixed
  in its code; it runs here at 1/8 of them through ``nas_jax.models.AtWidths``, as a user
  would shrink it.
* jax-resnet's ResNet18 at widths (8, 16, 32, 64): no ``train`` keyword, its BatchNorms
  take their mode from whether ``batch_stats`` is mutable, so it needs the contract's
  two-line adapter (``nas_jax.models.contract``).
"""
import flax.linen as nn
import flaxmodels
import jax
import jax_resnet

from nas_jax.models import AtWidths

# the logits' dtype when the variables are float64: flaxmodels' BatchNorm casts its input to
# float32 in its own code, so that model computes in float32 whatever it is given
COMPUTES_IN = {"flaxmodels_resnet18": "float32", "jax_resnet18": "float64"}


def conv_widths(model: nn.Module, image_shape=(1, 32, 32, 3)) -> dict:
    """``{path: features}`` of every ``nn.Conv`` of ``model`` (traced, not computed)."""
    found = {}

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.Conv) and context.method_name == "__call__":
            found["/".join(context.module.path)] = context.module.features
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), jax.ShapeDtypeStruct(image_shape, "float32"))
    return found


def flaxmodels_resnet18(num_classes=10):
    net = flaxmodels.ResNet18(output="logits", pretrained=None, normalize=False, num_classes=num_classes)
    return AtWidths(net, tuple((path, (("features", f // 8),)) for path, f in sorted(conv_widths(net).items())))


class Adapted(nn.Module):
    """jax-resnet's models called as ``model(x, train=...)``."""
    net: nn.Module

    @nn.compact
    def __call__(self, x, train: bool = False):
        return self.net(x)


def jax_resnet18(num_classes=10):
    return Adapted(jax_resnet.ResNet18(n_classes=num_classes, hidden_sizes=(8, 16, 32, 64)))
