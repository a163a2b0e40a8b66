"""Graph PruningNet on ImageNet-2012 with MobileNetV2 (the pruning papers' main backbone).
NOT RUN HERE: it needs ImageNet in a local TFDS data_dir.

MetaPruning's width grid (0.10 to 1.00 in steps of 0.03, 31 choices) and BN recalibration
on 100 training batches; the rest is ours: 32 epochs of batch 256 (the PruningNet only
has to rank configurations, the searched network is fine-tuned afterwards), SGD lr 0.1
momentum 0.9, cosine, wd 4e-5, grad clip 5, one width configuration per device shard
(set ``configurations_per_step`` to the number of devices; 8 here). The pruned network
computes in bfloat16; the PruningNet and its generated weights stay float32.

    nas-jax prune train --config experiments/configs/prune_imagenet_mobilenet_v2.py --workdir W \\
        --config.data_dir=D [--config.pruning.configurations_per_step=NUM_DEVICES]
    nas-jax prune search --workdir W --method rl --budget flops=0.5 \\
        --config experiments/configs/prune_search_imagenet.py
"""
from nas_jax.pruning.config import pruning_section
from nas_jax.train.config import default_config

MODEL = "mobilenet_v2"


def get_config():
    c = default_config()
    c.model, c.width, c.dtype = MODEL, 1.0, "bfloat16"
    # the first 10,000 training images are the width search's holdout (prune_search_imagenet.py)
    c.dataset, c.train_split, c.eval_split, c.image_size = "imagenet2012", "train[10000:]", "validation", 224
    c.batch_size, c.eval_batch_size, c.num_workers = 256, 500, 12
    c.num_epochs = 32.0
    c.learning_rate, c.weight_decay, c.warmup_steps, c.grad_clip_norm = 0.1, 4e-5, 2500, 5.0
    c.log_every, c.eval_every, c.checkpoint_every, c.max_to_keep = 100, 5004, 2500, 3
    c.pruning = pruning_section(grid_step=0.03, gcn_features=64, generator_hidden=64, calibration_batches=100,
                                configurations_per_step=8)
    return c
