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
    c.model = MODEL  # zoo model (nas_jax.models.MODELS) or package.module:function
    c.width = 1.0  # zoo width multiplier
    c.dtype = "bfloat16"  # compute dtype (parameters stay float32)
    # the first 10,000 training images are the width search's holdout (prune_search_imagenet.py)
    c.dataset = "imagenet2012"  # digits | mnist | cifar10 | imagenet2012 | synthetic
    c.train_split = "train[10000:]"  # TFDS split read for training
    c.eval_split = "validation"  # TFDS split evaluated during training
    c.image_size = 224  # square input side (0: the dataset's own)
    c.batch_size = 256  # global batch, split over all devices
    c.eval_batch_size = 500  # global evaluation batch
    c.num_workers = 12  # grain worker processes
    c.num_epochs = 32.0
    c.learning_rate = 0.1  # peak of the warmup-cosine schedule
    c.weight_decay = 4e-5  # on kernels only
    c.warmup_steps = 2500  # linear warmup length
    c.grad_clip_norm = 5.0  # global norm clip (0: none)
    c.log_every = 100  # steps between train-metric lines
    c.eval_every = 5004  # steps between evaluations (0: only at the end)
    c.checkpoint_every = 2500  # steps between orbax checkpoints
    c.max_to_keep = 3  # checkpoints kept
    c.pruning = pruning_section(grid_step=0.03, gcn_features=64, generator_hidden=64, calibration_batches=100,
                                configurations_per_step=8)
    return c
