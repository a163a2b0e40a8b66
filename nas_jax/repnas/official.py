"""Official RepNAS checkpoints (bestfleer/RepNAS ``RepVGG`` supernets): import, fix the
mask, fuse and evaluate.

An official supernet's state_dict holds ``features.{i}`` MixedOps (``_ops.{k}.*``, the
identity ``skip_connect.bn.*`` where stride 1, and an unused weight-sharing
``conv.conv.*`` / ``conv.bn.*``), ``alphas`` ``[L, 6]`` and ``linear.*``. In Flax it is the
zoo model with ``block='repnas'`` (``features_{i}/_ops_{k}/...``). The mask is a given
``genotype.json`` or, as the official ``fixed_mask()`` does, the noise-free top-k of
the alphas with ``k = int(L * 6 * kept_ratio)``.
"""
from __future__ import annotations

import os
import time
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from nas_jax.data import create_pipeline
from nas_jax.interop import split_repnas_supernet, torch_to_flax
from nas_jax.models import create_model
from nas_jax.repnas.genotype import read_genotype_mask
from nas_jax.repnas.searchable import find_searchable_layers
from nas_jax.repnas.masks import BranchBudget, kept_mask
from nas_jax.repnas.run import fuse_and_report


def official_mask(alphas, num_layers: int, kept_ratio: float) -> np.ndarray:
    """The bool ``[L, 6]`` noise-free top-k of official ``alphas`` (as ``fixed_mask()``)."""
    alphas = np.asarray(alphas, np.float32)
    budget = BranchBudget(num_layers, kept_ratio)
    if alphas.shape != (num_layers, budget.total_branches // num_layers):
        raise ValueError(f"alphas of shape {alphas.shape}; the model has {num_layers} searchable layers")
    return np.asarray(kept_mask(jnp.asarray(alphas), budget)) > 0


def import_official(checkpoint, model_name: str, workdir: str, *, num_classes: int = 1000, width: float = 1.0,
                    mask_file: Optional[str] = None, kept_ratio: float = 0.34, dataset: str = "digits",
                    data_dir: str = "", split: str = "test", image_size: int = 0, batch_size: int = 128) -> Dict:
    """Imports ``checkpoint`` into ``model_name`` (``block='repnas'``), fixes its mask,
    fuses it and evaluates both forms on ``dataset``/``split``; writes ``genotype.json``,
    ``deploy/``, ``deploy.json`` and ``report.json`` in ``workdir`` and returns the report."""
    start = time.perf_counter()
    os.makedirs(workdir, exist_ok=True)
    eval_data = create_pipeline(dataset, split, data_dir=data_dir, image_size=image_size, num_classes=num_classes)
    if eval_data.num_classes != num_classes:
        raise ValueError(f"{dataset} has {eval_data.num_classes} classes, the checkpoint's model {num_classes}")
    model = create_model(model_name, block="repnas", num_classes=num_classes, width=width)
    input_shape = (1,) + tuple(eval_data.image_shape)
    layers = find_searchable_layers(model, input_shape)
    state_dict, alphas = split_repnas_supernet(checkpoint)
    reference = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                               jax.ShapeDtypeStruct(input_shape, jnp.float32))
    variables = torch_to_flax(state_dict, reference)
    if mask_file is not None:
        mask = read_genotype_mask(mask_file, [layer.path for layer in layers])
    elif alphas is not None:
        mask = official_mask(alphas, len(layers), kept_ratio)
    else:
        raise ValueError("the checkpoint holds no alphas: give the mask as a genotype.json (--mask)")
    BranchBudget(len(layers), kept_ratio)  # refuses a kept_ratio out of range
    settings = {"model": model_name, "width": width, "dtype": "float32"}
    return fuse_and_report(model, layers, variables, mask, settings, workdir, eval_data, batch_size, alphas, {
        "checkpoint": os.fspath(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else "<state_dict>",
        "mask_source": mask_file or "alphas", "kept_ratio": kept_ratio, "wall_s": time.perf_counter() - start})
