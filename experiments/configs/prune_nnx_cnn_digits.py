"""Graph PruningNet on the NNX CNN of ``experiments/models/nnx_cnn.py``, on the embedded digits (32x32x3).

    nas-jax prune train --config experiments/configs/prune_nnx_cnn_digits.py --workdir W
    nas-jax prune search --workdir W --method evolution --budget flops=0.5
    nas-jax prune export --workdir W --widths W/search/evolution/best.json --out W/export
"""
import ml_collections

from nas_jax.pruning.config import pruning_section
from nas_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "experiments/models/nnx_cnn.py:nnx_cnn"  # named by its path from the repository root
    c.model_kwargs = ml_collections.ConfigDict({"width": 16})
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
