"""ResNet-18 (width 0.25) on scikit-learn's digits, 32x32: the embedded, download-free run.

    nas-jax train --config experiments/configs/train_digits.py --workdir /tmp/digits
    nas-jax train --config experiments/configs/train_digits.py --workdir /tmp/digits_dbb --config.block=dbb
"""
from nas_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model, c.width = "resnet18", 0.25
    c.dataset, c.train_split, c.eval_split = "digits", "train", "validation"
    c.batch_size, c.eval_batch_size = 64, 128
    c.num_epochs = 30.0  # 16 steps per epoch
    c.learning_rate, c.weight_decay, c.warmup_steps = 0.1, 5e-4, 32
    c.log_every, c.eval_every, c.checkpoint_every = 16, 80, 80
    return c
