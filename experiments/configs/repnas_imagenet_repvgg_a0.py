"""RepNAS on ImageNet-2012 with RepVGG-A0, the paper's schedule: 150 epochs (15 random
masks, 35 alpha training, 100 on the fixed sub-network), batch 256, weights SGD lr 0.1
momentum 0.9 wd 1e-4 (none on BN / biases), cosine, grad clip 5; alphas Adam lr 1e-4,
betas (0.5, 0.999), wd 5e-4; kept_ratio 0.34. bf16 compute, f32 params; data parallel
over all devices (TPU / GPU pods: one process per host, the same command).

    nas-jax repnas --config experiments/configs/repnas_imagenet_repvgg_a0.py --workdir W \\
        --config.data_dir=D
"""
from nas_jax.repnas.config import repnas_section
from nas_jax.train.config import default_config

MODEL = "repvgg_a0"


def get_config():
    c = default_config()
    c.model = MODEL  # zoo model (nas_jax.models.MODELS) or package.module:function
    c.block = "repnas"  # repnas (the exact block) | repnas_online (collapsed into one conv every step)
    c.width = 1.0  # zoo width multiplier
    c.dtype = "bfloat16"  # compute dtype (parameters stay float32)
    c.dataset = "imagenet2012"  # digits | mnist | cifar10 | imagenet2012 | synthetic
    c.train_split = "train"  # TFDS split read for training
    c.eval_split = "validation"  # TFDS split evaluated during training
    c.image_size = 224
    c.batch_size = 256  # global batch, split over all devices
    c.eval_batch_size = 500  # global evaluation batch
    c.num_epochs = 150.0
    c.learning_rate = 0.1  # peak of the warmup-cosine schedule
    c.weight_decay = 1e-4  # on kernels only
    c.warmup_steps = 0  # linear warmup length
    c.grad_clip_norm = 5.0  # global norm clip (0: none)
    c.num_workers = 12
    c.log_every = 100  # steps between train-metric lines
    c.eval_every = 5004  # steps between evaluations (0: only at the end)
    c.checkpoint_every = 2500  # steps between orbax checkpoints
    c.max_to_keep = 3  # checkpoints kept
    c.repnas = repnas_section(random_epochs=15.0, search_epochs=35.0, test_split="validation")
    return c
