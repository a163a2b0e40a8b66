"""Graph PruningNet on a user's model (``experiments/custom_model.py:small_net``, named by
its path from the repository root) on the embedded digits (32x32x3).

    nas-jax prune train --config experiments/configs/prune_custom_digits.py --workdir W
"""
from nas_jax.pruning.config import pruning_section
from nas_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "experiments/custom_model.py:small_net"  # package.module:function or file.py:function
    c.width = 1.0  # a user model sets its own widths
    c.dataset = "digits"
    c.image_size = 32
    c.batch_size = 64
    c.eval_batch_size = 128
    c.num_steps = 400
    c.optimizer = "adamw"
    c.learning_rate = 2e-3
    c.weight_decay = 1e-4
    c.warmup_steps = 50
    c.grad_clip_norm = 5.0
    c.log_every = 50
    c.checkpoint_every = 200
    c.pruning = pruning_section()  # grid 0.1..1.0 step 0.05
    return c
