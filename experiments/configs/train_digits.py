"""ResNet-18 (width 0.25) on scikit-learn's digits, 32x32: the embedded, download-free run.

    nas-jax train --config experiments/configs/train_digits.py --workdir /tmp/digits
    nas-jax train --config experiments/configs/train_digits.py --workdir /tmp/digits_dbb --config.block=dbb
"""
from nas_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "resnet18"  # zoo model (nas_jax.models.MODELS) or package.module:function
    c.width = 0.25  # zoo width multiplier
    c.dataset = "digits"  # digits | mnist | cifar10 | imagenet2012 | synthetic
    c.train_split = "train"  # TFDS split read for training
    c.eval_split = "validation"  # TFDS split evaluated during training
    c.batch_size = 64  # global batch, split over all devices
    c.eval_batch_size = 128  # global evaluation batch
    c.num_epochs = 30.0  # 16 steps per epoch
    c.learning_rate = 0.1  # peak of the warmup-cosine schedule
    c.weight_decay = 5e-4  # on kernels only
    c.warmup_steps = 32  # linear warmup length
    c.log_every = 16  # steps between train-metric lines
    c.eval_every = 80  # steps between evaluations (0: only at the end)
    c.checkpoint_every = 80  # steps between orbax checkpoints
    return c
