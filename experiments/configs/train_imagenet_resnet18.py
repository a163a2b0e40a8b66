"""ResNet-18 on ImageNet-2012, the DBB paper's recipe: 120 epochs, batch 256, SGD lr 0.1
momentum 0.9, wd 1e-4 (none on BN / biases), cosine; bf16 compute, f32 params.

    nas-jax train --config experiments/configs/train_imagenet_resnet18.py --workdir W \\
        --config.data_dir=D --config.block=dbb
"""
from nas_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model, c.width, c.dtype = "resnet18", 1.0, "bfloat16"
    c.dataset, c.train_split, c.eval_split = "imagenet2012", "train", "validation"
    c.image_size = 224
    c.batch_size, c.eval_batch_size = 256, 500
    c.num_epochs = 120.0
    c.learning_rate, c.weight_decay, c.warmup_steps = 0.1, 1e-4, 5004  # ~1 epoch
    c.num_workers = 12
    c.log_every, c.eval_every, c.checkpoint_every, c.max_to_keep = 100, 5004, 2500, 3
    return c
