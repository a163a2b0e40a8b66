"""Graph PruningNet on ImageNet-2012 with ResNet-50: the recipe of
``prune_imagenet_mobilenet_v2.py`` with another backbone. NOT RUN HERE (needs ImageNet).

    nas-jax prune train --config experiments/configs/prune_imagenet_resnet50.py --workdir W --config.data_dir=D
"""
import os

from nas_jax.train.config import load_config


def get_config():
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "prune_imagenet_mobilenet_v2.py"))
    c.model = "resnet50"  # zoo model (nas_jax.models.MODELS) or package.module:function
    c.weight_decay = 1e-4  # on kernels only
    return c
