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
    c.model, c.block, c.width, c.dtype = MODEL, "repnas", 1.0, "bfloat16"
    c.dataset, c.train_split, c.eval_split = "imagenet2012", "train", "validation"
    c.image_size = 224
    c.batch_size, c.eval_batch_size = 256, 500
    c.num_epochs = 150.0
    c.learning_rate, c.weight_decay, c.warmup_steps, c.grad_clip_norm = 0.1, 1e-4, 0, 5.0
    c.num_workers = 12
    c.log_every, c.eval_every, c.checkpoint_every, c.max_to_keep = 100, 5004, 2500, 3
    c.repnas = repnas_section(random_epochs=15.0, search_epochs=35.0, test_split="validation")
    return c
