"""Graph PruningNet on ImageNet-2012 with ResNet-50: the recipe of
``prune_imagenet_mobilenet_v2.py`` with another backbone. NOT RUN HERE (needs ImageNet).

    nas-jax prune train --config experiments/configs/prune_imagenet_resnet50.py --workdir W --config.data_dir=D
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "_prune_imagenet_mobilenet_v2", os.path.join(os.path.dirname(__file__), "prune_imagenet_mobilenet_v2.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config():
    c = _base.get_config()
    c.model, c.weight_decay = "resnet50", 1e-4
    return c
