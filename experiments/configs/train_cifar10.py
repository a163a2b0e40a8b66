"""ResNet-18 on CIFAR-10 (a prepared TFDS data_dir; 32x32, pad-crop + flip).

    nas-jax train --config experiments/configs/train_cifar10.py --workdir W --config.data_dir=D
"""
from nas_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "resnet18"  # zoo model (nas_jax.models.MODELS) or package.module:function
    c.width = 1.0  # zoo width multiplier
    c.dataset = "cifar10"  # digits | mnist | cifar10 | imagenet2012 | synthetic
    c.train_split = "train"  # TFDS split read for training
    c.eval_split = "test"  # TFDS split evaluated during training
    c.batch_size = 128  # global batch, split over all devices
    c.eval_batch_size = 500  # global evaluation batch
    c.num_epochs = 200.0
    c.learning_rate = 0.1  # peak of the warmup-cosine schedule
    c.weight_decay = 5e-4  # on kernels only
    c.warmup_steps = 390  # linear warmup length
    c.num_workers = 4
    c.log_every = 100  # steps between train-metric lines
    c.eval_every = 3900  # steps between evaluations (0: only at the end)
    c.checkpoint_every = 3900  # steps between orbax checkpoints
    return c
