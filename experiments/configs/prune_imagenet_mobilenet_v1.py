"""Graph PruningNet on ImageNet-2012 with MobileNetV1: the recipe of
``prune_imagenet_mobilenet_v2.py`` with another backbone. NOT RUN HERE (needs ImageNet).

    nas-jax prune train --config experiments/configs/prune_imagenet_mobilenet_v1.py --workdir W --config.data_dir=D
"""
import os

from nas_jax.train.config import load_config


def get_config():
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "prune_imagenet_mobilenet_v2.py"))
    c.model = "mobilenet_v1"
    return c
