"""Graph PruningNet on the embedded digits (32x32x3): ResNet-18 at width 0.25 (16..128
channels), widths 0.1..1.0 in steps of 0.05, a few minutes on 2 CPU cores.

    nas-jax prune train --config experiments/configs/prune_digits.py --workdir W
"""
import ml_collections

from nas_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model, c.width, c.dataset, c.image_size = "resnet18", 0.25, "digits", 32
    c.batch_size, c.eval_batch_size = 64, 128
    c.num_steps = 600
    c.optimizer, c.learning_rate, c.weight_decay, c.warmup_steps = "adamw", 2e-3, 1e-4, 50
    c.grad_clip_norm = 5.0
    c.log_every, c.checkpoint_every = 50, 200
    c.pruning = ml_collections.ConfigDict()
    c.pruning.grid_start, c.pruning.grid_stop, c.pruning.grid_step = 0.1, 1.0, 0.05
    c.pruning.gcn_features, c.pruning.gcn_depth, c.pruning.generator_hidden = 32, 2, 32
    c.pruning.calibration_batches = 10
    # configurations drawn per step, each on its own part of the batch (set it to the number
    # of devices on a pod: one configuration per device shard; on the CPU 1 is fastest)
    c.pruning.configurations_per_step = 1
    c.pruning.report_widths = (0.25, 0.5, 0.75, 1.0)
    return c
