"""ResNet-18 on CIFAR-10 (a prepared TFDS data_dir; 32x32, pad-crop + flip).

    nas-jax train --config experiments/configs/train_cifar10.py --workdir W --config.data_dir=D
"""
from nas_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model, c.width = "resnet18", 1.0
    c.dataset, c.train_split, c.eval_split = "cifar10", "train", "test"
    c.batch_size, c.eval_batch_size = 128, 500
    c.num_epochs = 200.0
    c.learning_rate, c.weight_decay, c.warmup_steps = 0.1, 5e-4, 390
    c.num_workers = 4
    c.log_every, c.eval_every, c.checkpoint_every = 100, 3900, 3900
    return c
