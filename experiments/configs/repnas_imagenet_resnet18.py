"""RepNAS on ImageNet-2012 with ResNet-18 (every 3x3 conv-BN searchable), the RepVGG-A0
recipe of ``repnas_imagenet_repvgg_a0.py`` with another backbone.

    nas-jax repnas --config experiments/configs/repnas_imagenet_resnet18.py --workdir W \\
        --config.data_dir=D
"""
import os

from nas_jax.train.config import load_config


def get_config():
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "repnas_imagenet_repvgg_a0.py"))
    c.model = "resnet18"
    return c
