"""Graph PruningNet on ImageNet-2012 with MobileNetV1: the recipe of
``prune_imagenet_mobilenet_v2.py`` with another backbone. NOT RUN HERE (needs ImageNet).

    nas-jax prune train --config experiments/configs/prune_imagenet_mobilenet_v1.py --workdir W --config.data_dir=D
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "_prune_imagenet_mobilenet_v2", os.path.join(os.path.dirname(__file__), "prune_imagenet_mobilenet_v2.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config():
    c = _base.get_config()
    c.model = "mobilenet_v1"
    return c
