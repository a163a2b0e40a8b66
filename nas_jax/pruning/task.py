"""Joint training of the Graph PruningNet as a ``nas_jax.train`` task, and evaluation of
width configurations.

Each training step draws one width ratio per prunable group from the grid (from the
step's random key, so every step is a new configuration and a resumed run draws the same
ones), generates every layer's weights, runs the masked network with train-mode
BatchNorm and backpropagates the cross-entropy into the generators and the GCN.

``configurations_per_step`` K > 1 splits the batch into K equal consecutive parts, each
with its own configuration (its own generated weights and BatchNorm batch statistics),
under ``jax.vmap``; the loss is their mean. With K equal to the number of devices of the
data mesh, every device shard trains its own configuration: K configurations per step for
the price of one. On the CPU the vmapped convolutions run as grouped ones (slower). The
train state's ``params`` are the PruningNet's; ``batch_stats`` and ``extra`` are empty
(no running statistics: they would mix configurations). All shapes are full width, so
the step compiles once.

The pruned model is a zoo model (``ZooSpec``) or a user's linen model (``CustomSpec``):
the PruningNet generates every layer's kernel, BatchNorms are affine-free, and the
model's other parameters (biases, LayerNorm / GroupNorm scales) are learnt directly
(``params['network']``, initialised as the model initialises them).

The loop's own evaluation (``train=False``) runs the full-width network with BatchNorm
on each evaluation batch's statistics; ``evaluate_configuration`` is the real
measurement: BatchNorm recalibrated for the configuration, then evaluation.
"""
from __future__ import annotations

import functools
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from nas_jax.models.custom import CustomSpec
from nas_jax.models.network import ZooSpec
from nas_jax.pruning import masked
from nas_jax.pruning.graph import build_layer_graph
from nas_jax.pruning.pruningnet import PruningNet
from nas_jax.pruning.widths import WidthGrid, full_channels, group_channels, sample_ratios
from nas_jax.train.step import create_mesh, shard_batch
from nas_jax.train.task import Task, cross_entropy


class PruningTask(Task):
    """``spec``: the model pruned (zoo or user); ``grid``: the candidate ratios;
    ``dtype``: the compute dtype of a zoo model's forward (``'bfloat16'`` on accelerators;
    the PruningNet and its generated weights stay float32, the convolutions cast them;
    None: the dtype of the inputs and weights); ``keep_full``: layer paths kept at full
    width (``build_layer_graph``); the other arguments size the PruningNet (see
    ``PruningNet``)."""

    def __init__(self, spec: Union[ZooSpec, CustomSpec], grid: WidthGrid, gcn_features: int = 64,
                 gcn_depth: int = 2, generator_hidden: int = 32, label_smoothing: float = 0.0,
                 configurations_per_step: int = 1, dtype: Optional[str] = None, keep_full: Sequence[str] = ()):
        if configurations_per_step < 1:
            raise ValueError(f"configurations_per_step must be >= 1, not {configurations_per_step}")
        self.spec, self.grid, self.label_smoothing = spec, grid, label_smoothing
        self.configurations_per_step = configurations_per_step
        model = spec.model()
        self.graph = build_layer_graph(model, (1, spec.image_size, spec.image_size, 3), spec.name, keep_full)
        multi = [layer.path for layer in self.graph.layers if layer.kernel_path is None]
        if multi:
            raise NotImplementedError(f"layers {multi} have several kernels (multi-branch blocks): prune the "
                                      "plain form of the model")
        if dtype is not None and isinstance(spec, ZooSpec):
            model = model.clone(dtype=jnp.dtype(dtype))
        self.model = model
        self.template = masked.template(model, self.graph)
        self.learnt = masked.learnt_paths(self.graph, self.template["params"])
        self.net = PruningNet(self.graph, gcn_features, gcn_depth, generator_hidden)
        # compiled once per task, and freed with it
        self.generate_compiled = jax.jit(self.generate)
        self.statistics = jax.jit(functools.partial(masked.batch_statistics, model, self.graph))
        self.accuracy_sums = jax.jit(functools.partial(masked.accuracy_sums, model, self.graph))

    def init(self, rng, batch):
        model_params = traverse_util.flatten_dict(self.model.init(
            jax.random.fold_in(rng, 1), jnp.zeros(self.graph.input_shape, jnp.float32), train=False)["params"], sep="/")
        params = {"pruningnet": self.net.init(rng, full_channels(self.graph))["params"],
                  "network": traverse_util.unflatten_dict({path: model_params[path] for path in self.learnt}, sep="/")}
        return {"params": params, "batch_stats": {}, "extra": {}}

    def generate(self, params, channels, batch_stats=None) -> dict:
        """The masked model's variables for ``channels`` [num_groups]."""
        weights = self.net.apply({"params": params["pruningnet"]}, channels)
        learnt = traverse_util.flatten_dict(params["network"], sep="/")
        return masked.network_variables(self.graph, self.template, weights, learnt, batch_stats)

    def masked_logits(self, params, ratios, images, rng=None) -> jax.Array:
        """Logits of the masked network at ``ratios`` [num_groups] (train-mode BatchNorm;
        ``rng``: the dropout key)."""
        channels = group_channels(self.graph, ratios)
        return masked.masked_apply(self.model, self.graph, self.generate(params, channels), channels, images,
                                   train=True, rng=rng)

    def loss(self, params, extra, batch_stats, batch, rng, train):
        images, parts = batch["image"], self.configurations_per_step if train else 1
        if images.shape[0] % parts:
            raise ValueError(f"a batch of {images.shape[0]} does not split into configurations_per_step={parts} "
                             "equal parts; choose a batch size divisible by it")
        if not train:
            ratios = jnp.ones((1, len(self.graph.groups)), jnp.float32)
        else:
            keys = rng[None] if parts == 1 else jax.random.split(rng, parts)
            ratios = jax.vmap(lambda key: sample_ratios(key, self.graph, self.grid))(keys)
        dropout = jax.random.split(jax.random.fold_in(rng, 1), parts) if train else [None]
        if parts == 1:
            logits = self.masked_logits(params, ratios[0], images, dropout[0])
        else:
            split = images.reshape(parts, images.shape[0] // parts, *images.shape[1:])
            logits = jax.vmap(self.masked_logits, in_axes=(None, 0, 0, 0))(params, ratios, split, dropout)
            logits = logits.reshape(images.shape[0], -1)
        smoothing = self.label_smoothing if train else 0.0
        loss = cross_entropy(logits, batch["label"], smoothing, batch.get("mask"))
        kept = jax.vmap(lambda r: group_channels(self.graph, r))(ratios) / full_channels(self.graph)
        return loss, (logits, batch_stats, {"mean_width": kept.mean()})



def configuration_variables(task: PruningTask, params, ratios, calibration_images: Iterable) -> Tuple[dict, jax.Array]:
    """(masked full-width variables with recalibrated BatchNorm statistics, kept channels)
    for ``ratios`` [num_groups]; ``calibration_images``: batches of images."""
    channels = group_channels(task.graph, jnp.asarray(ratios, jnp.float32))
    variables = task.generate_compiled(params, channels)
    stats = masked.recalibrate(task.statistics, variables, channels, calibration_images)
    return dict(variables, batch_stats=stats), channels


def evaluate_configuration(task: PruningTask, params, ratios, calibration_images: Iterable,
                           eval_batches: Iterable[Dict[str, np.ndarray]]) -> float:
    """Top-1 accuracy of configuration ``ratios`` with recalibrated BatchNorm."""
    mesh = create_mesh()
    variables, channels = configuration_variables(task, params, ratios, calibration_images)
    correct = count = 0.0
    for batch in eval_batches:
        c, n = task.accuracy_sums(variables, channels, shard_batch(batch, mesh))
        correct, count = correct + float(c), count + float(n)
    return correct / max(count, 1.0)
