"""RepNAS, then Graph Pruning of the fused network, then fine-tuning, on the embedded
digits: the pipeline no single anchor has (``experiments/repnas_prune_pipeline.py``).

    python experiments/repnas_prune_pipeline.py --config experiments/configs/pipeline_digits.py --workdir W

Each stage takes its own experiment config (paths relative to the repository) with the
overrides listed here; the RepNAS and pruning stages must name the same model, width and
dataset (the driver checks it before running anything).
"""
import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.repnas_config = "experiments/configs/repnas_digits.py"
    c.repnas_overrides = ()
    c.prune_config = "experiments/configs/prune_digits.py"
    c.prune_overrides = ()
    c.search_config = "experiments/configs/prune_search_digits.py"
    c.method = "rl"  # width-search method
    c.budget = "flops=0.5"  # metric=fraction of the full model
    c.finetune_steps = 160  # of experiments/configs/train_digits.py, from the exported weights
    c.seed = 0
    return c
