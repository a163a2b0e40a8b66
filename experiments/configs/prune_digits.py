"""Graph PruningNet on the embedded digits (32x32x3): ResNet-18 at width 0.25 (16..128
channels), widths 0.1..1.0 in steps of 0.05, a few minutes on 2 CPU cores.

    nas-jax prune train --config experiments/configs/prune_digits.py --workdir W
"""
from nas_jax.pruning.config import pruning_section
from nas_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model, c.width, c.dataset, c.image_size = "resnet18", 0.25, "digits", 32
    c.batch_size, c.eval_batch_size = 64, 128
    c.num_steps = 600
    c.optimizer, c.learning_rate, c.weight_decay, c.warmup_steps = "adamw", 2e-3, 1e-4, 50
    c.grad_clip_norm = 5.0
    c.log_every, c.checkpoint_every = 50, 200
    c.pruning = pruning_section()  # grid 0.1..1.0 step 0.05, GCN 32 x 2, generators 32 hidden
    return c
