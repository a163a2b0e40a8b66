"""RepNAS on ImageNet-2012 with ResNet-18 (every 3x3 conv-BN searchable), the RepVGG-A0
recipe of ``repnas_imagenet_repvgg_a0.py`` with another backbone.

    nas-jax repnas --config experiments/configs/repnas_imagenet_resnet18.py --workdir W \\
        --config.data_dir=D
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "_repnas_imagenet_repvgg_a0", os.path.join(os.path.dirname(__file__), "repnas_imagenet_repvgg_a0.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config():
    c = _base.get_config()
    c.model = "resnet18"
    return c
