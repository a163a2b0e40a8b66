"""Width search for an ImageNet PruningNet (MobileNetV1/V2, ResNet-50), MetaPruning's
settings: 20 generations x 50 candidates, population 50, top 10, 25 mutations (p 0.1),
25 crossovers; candidates ranked on the first 10,000 images of the training split (as
MetaPruning's held-out subset of train), which the ImageNet PruningNet configs leave out
of training (``train_split='train[10000:]'``; the search refuses a holdout that overlaps
the PruningNet's training split). NOT RUN HERE: it needs ImageNet (a local TFDS
data_dir) and a trained ImageNet PruningNet.

    nas-jax prune search --workdir W --method rl --budget flops=0.5 \\
        --config experiments/configs/prune_search_imagenet.py
"""
from nas_jax.pruning.search.config import default_config


def get_config():
    c = default_config()
    s = c.search
    s.evaluations = 1000  # candidates evaluated per search
    s.chunk = 16  # candidates evaluated together under vmap
    s.holdout_split = "train[:10000]"  # split candidates are ranked on
    s.holdout_examples = 0  # examples of it used (0: all)
    s.rl.batch = 50
    return c
