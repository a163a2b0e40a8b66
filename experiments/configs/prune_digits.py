"""Graph PruningNet on the embedded digits (32x32x3): ResNet-18 at width 0.25 (16..128
channels), widths 0.1..1.0 in steps of 0.05, a few minutes on 2 CPU cores.

    nas-jax prune train --config experiments/configs/prune_digits.py --workdir W
"""
from nas_jax.pruning.config import pruning_section
from nas_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "resnet18"  # zoo model (nas_jax.models.MODELS) or package.module:function
    c.width = 0.25  # zoo width multiplier
    c.dataset = "digits"  # digits | mnist | cifar10 | imagenet2012 | synthetic
    c.image_size = 32  # square input side (0: the dataset's own)
    c.batch_size = 64  # global batch, split over all devices
    c.eval_batch_size = 128  # global evaluation batch
    c.num_steps = 600
    c.optimizer = "adamw"  # sgd | adamw
    c.learning_rate = 2e-3  # peak of the warmup-cosine schedule
    c.weight_decay = 1e-4  # on kernels only
    c.warmup_steps = 50  # linear warmup length
    c.grad_clip_norm = 5.0
    c.log_every = 50  # steps between train-metric lines
    c.checkpoint_every = 200  # steps between orbax checkpoints
    c.pruning = pruning_section()  # grid 0.1..1.0 step 0.05, GCN 32 x 2, generators 32 hidden
    return c
