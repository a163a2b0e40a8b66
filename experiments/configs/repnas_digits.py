"""RepNAS one-stage search on the embedded digits (32x32): ResNet-18 at width 0.25
(16 searchable 3x3 layers, 16..128 channels), a few minutes on 2 CPU cores (most of it
XLA compiling the search step).

    nas-jax repnas --config experiments/configs/repnas_digits.py --workdir W
    nas-jax repnas --config experiments/configs/repnas_digits.py --workdir W --config.repnas.kept_ratio=0.5

The paper's 150-epoch schedule (15 random, 35 search, 100 fixed) scaled down to
2 + 4 + 9 epochs of 16 steps. The alphas' learning rate is raised from 1e-4 to 3e-2 so
that they can move about as far in 64 search steps (steps x lr ~ 2) as in the paper's
35 ImageNet epochs (~175k steps x 1e-4 ~ 17); at 1e-4 the search would stay random.

The search samples masks the nas_jax way (repnas.noise_lifetime=48: each branch's noise
lives 48 steps on average; noise_final=0.05; branch_scale_init=0.0), with which the
supernet reaches about 0.8 train accuracy at the fix step; the paper's way (a new mask
every step, branches at full scale) stays near chance here (README, "Does each search
search?"):

    nas-jax repnas --config experiments/configs/repnas_digits.py --workdir W \
        --config.repnas.noise_lifetime=1 --config.repnas.noise_final=1.0 --config.repnas.branch_scale_init=1.0
"""
from nas_jax.train.config import default_config
from nas_jax.repnas.config import repnas_section


def get_config():
    c = default_config()
    c.model = "resnet18"  # zoo model (nas_jax.models.MODELS) or package.module:function
    c.block = "repnas"  # repnas (the exact block) | repnas_online (collapsed into one conv every step)
    c.width = 0.25  # zoo width multiplier
    c.dataset = "digits"  # digits | mnist | cifar10 | imagenet2012 | synthetic
    c.train_split = "train"  # TFDS split read for training
    c.eval_split = "validation"  # TFDS split evaluated during training
    c.batch_size = 64  # global batch, split over all devices
    c.eval_batch_size = 128  # global evaluation batch
    c.num_epochs = 15.0  # 16 steps per epoch
    c.learning_rate = 0.1  # peak of the warmup-cosine schedule
    c.weight_decay = 1e-4  # on kernels only
    c.warmup_steps = 32  # linear warmup length
    c.grad_clip_norm = 5.0  # global norm clip (0: none)
    c.log_every = 16  # steps between train-metric lines
    c.eval_every = 0  # steps between evaluations (0: only at the end)
    c.checkpoint_every = 48  # steps between orbax checkpoints
    c.repnas = repnas_section(random_epochs=2.0, search_epochs=4.0, alpha_learning_rate=3e-2)
    return c
