"""The model zoo: every model takes ``block`` (a kind of ``nas_jax.rep.kinds``), ``width``,
``num_classes`` and ``dtype``; inputs are NHWC images of any size >= 32."""
from __future__ import annotations

import functools

from nas_jax.models.at_widths import AtWidths
from nas_jax.models.custom import CustomSpec, is_custom
from nas_jax.models.conv_blocks import BlockSpec, conv_block
from nas_jax.models.mobilenet import MobileNetV1, MobileNetV2
from nas_jax.models.repvgg import REPVGG_CONFIGS, RepVGG
from nas_jax.models.resnet import ResNet
from nas_jax.rep.kinds import BLOCK_KINDS, MULTI_BRANCH_KINDS, block_kind

MODELS = {
    "resnet18": functools.partial(ResNet, stage_sizes=(2, 2, 2, 2)),
    "resnet34": functools.partial(ResNet, stage_sizes=(3, 4, 6, 3)),
    "resnet50": functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), bottleneck=True),
    "mobilenet_v1": MobileNetV1,
    "mobilenet_v2": MobileNetV2,
    **{f"repvgg_{k}": functools.partial(RepVGG, stage_sizes=v[0], stage_widths=v[1])
       for k, v in REPVGG_CONFIGS.items()},
}


def create_model(name: str, **kwargs):
    """A zoo model by name, e.g. ``create_model("resnet18", block="dbb", num_classes=10)``,
    or a user's model by ``package.module:function`` (``nas_jax.models.custom``; its
    ``model_kwargs``, block plain, width 1; ``image_size``: the side its contract is checked on)."""
    if is_custom(name):
        block, width, dtype = kwargs.get("block", "plain"), kwargs.get("width", 1.0), kwargs.get("dtype")
        if width != 1.0:
            raise ValueError(f"model {name}: width={width} applies to zoo models only; a user model sets its own "
                             "widths (add --config.width=1.0 when the config was written for a zoo model)")
        if dtype is not None and dtype != "float32":
            raise ValueError(f"model {name}: dtype={dtype} applies to zoo models only; set the compute dtype "
                             "inside a user model (and --config.dtype=float32)")
        spec = CustomSpec(name, kwargs["num_classes"], kwargs.get("image_size") or 224,
                          tuple(sorted(kwargs.get("model_kwargs", {}).items())))
        return spec.model(block)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; the zoo has {sorted(MODELS)}")
    block_kind(kwargs.get("block", "plain"))  # a ValueError for an unknown kind
    return MODELS[name](**kwargs)


__all__ = ["MODELS", "create_model", "AtWidths", "CustomSpec", "is_custom", "BLOCK_KINDS", "MULTI_BRANCH_KINDS", "BlockSpec", "conv_block",
           "ResNet", "MobileNetV1", "MobileNetV2", "RepVGG"]
