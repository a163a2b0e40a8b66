"""ResNet-18 on ImageNet-2012, the DBB paper's recipe: 120 epochs, batch 256, SGD lr 0.1
momentum 0.9, wd 1e-4 (none on BN / biases), cosine; bf16 compute, f32 params.

    nas-jax train --config experiments/configs/train_imagenet_resnet18.py --workdir W \\
        --config.data_dir=D --config.block=dbb
"""
from nas_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "resnet18"  # zoo model (nas_jax.models.MODELS) or package.module:function
    c.width = 1.0  # zoo width multiplier
    c.dtype = "bfloat16"  # compute dtype (parameters stay float32)
    c.dataset = "imagenet2012"  # digits | mnist | cifar10 | imagenet2012 | synthetic
    c.train_split = "train"  # TFDS split read for training
    c.eval_split = "validation"  # TFDS split evaluated during training
    c.image_size = 224
    c.batch_size = 256  # global batch, split over all devices
    c.eval_batch_size = 500  # global evaluation batch
    c.num_epochs = 120.0
    c.learning_rate = 0.1  # peak of the warmup-cosine schedule; ~1 epoch
    c.weight_decay = 1e-4  # on kernels only
    c.warmup_steps = 5004  # linear warmup length
    c.num_workers = 12
    c.log_every = 100  # steps between train-metric lines
    c.eval_every = 5004  # steps between evaluations (0: only at the end)
    c.checkpoint_every = 2500  # steps between orbax checkpoints
    c.max_to_keep = 3  # checkpoints kept
    return c
