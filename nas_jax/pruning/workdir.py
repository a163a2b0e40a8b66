"""A pruning run's pieces shared by the command line: its config, task, evaluation by
width, and export of a configuration from its work directory."""
from __future__ import annotations

import itertools
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nas_jax.common import write_json_atomic, write_text_atomic
from nas_jax.models import is_custom
from nas_jax.models.custom import CustomSpec
from nas_jax.models.network import ZooSpec, save_network
from nas_jax.pruning.cost import network_cost
from nas_jax.pruning.export import export_network
from nas_jax.pruning.masked import masked_apply
from nas_jax.pruning.task import PruningTask, configuration_variables, evaluate_configuration
from nas_jax.pruning.widths import WidthGrid, full_channels, group_channels, load_widths, uniform_ratios
from nas_jax.train.config import apply_overrides, load_config
from nas_jax.train.run import Run, pipeline_from_config
from nas_jax.train.step import create_mesh, data_sharding


def load_run_config(path: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    config = apply_overrides(load_config(path), overrides)
    if "pruning" not in config:
        raise ValueError(f"config {path!r} has no 'pruning' section: not a pruning config")
    return config


def pruning_task(config, num_classes: Optional[int] = None) -> PruningTask:
    """The task of a run's config (the model at ``config.image_size``, or 32 if 0);
    ``num_classes`` None: read from the config's training data."""
    if "pruning" not in config:
        raise ValueError("the run's config has no 'pruning' section: not a pruning run (`nas-jax prune train` "
                         "writes those)")
    p = config.pruning
    if num_classes is None:
        num_classes = pipeline_from_config(config, config.train_split).num_classes
    spec = model_spec(config, num_classes)
    grid = WidthGrid.arange(p.grid_start, p.grid_stop, p.grid_step)
    parts = p.get("configurations_per_step", 1)
    if config.batch_size % parts:
        raise ValueError(f"batch_size {config.batch_size} does not split into pruning.configurations_per_step="
                         f"{parts} equal parts; choose a batch size divisible by it")
    return PruningTask(spec, grid, p.gcn_features, p.gcn_depth, p.generator_hidden, config.label_smoothing, parts,
                       config.dtype, tuple(p.get("keep_full", ())))


def model_spec(config, num_classes: int) -> Union[ZooSpec, CustomSpec]:
    """The zoo model of ``config`` at ``config.image_size`` (32 if 0), or its user model
    (``package.module:function`` with ``config.model_kwargs``)."""
    size = config.image_size or 32
    if is_custom(config.model):
        if config.width != 1.0:
            raise ValueError(f"width={config.width} applies to zoo models only; {config.model} sets its own widths "
                             "(add --config.width=1.0 when the config was written for a zoo model)")
        return CustomSpec(config.model, num_classes, size, tuple(sorted(dict(config.get("model_kwargs", {})).items())))
    return ZooSpec(config.model, num_classes, config.width, size)


def calibration_images(config, train_data) -> List[np.ndarray]:
    """``pruning.calibration_batches`` training batches of images (augmented, a seed of
    their own), the data BatchNorm statistics are recalibrated on: this process's part of
    each (``global_images`` makes global arrays of them)."""
    batches = train_data.train_batches(config.batch_size, config.seed + 1)
    return [b["image"] for b in itertools.islice(batches, config.pruning.calibration_batches)]


def global_images(local_batches) -> List[jax.Array]:
    """Each process's image batches as global arrays over the mesh, so that statistics
    and sums computed on them cover every process's images."""
    sharding = data_sharding(create_mesh())
    return [jax.make_array_from_process_local_data(sharding, images) for images in local_batches]


def accuracy_by_width(config, task: PruningTask, params, train_data, eval_data) -> Dict[str, dict]:
    """``{'accuracy_by_width': {ratio: accuracy}, 'flops_by_width': ..., 'params_by_width': ...}``
    for the uniform widths ``pruning.report_widths``, BatchNorm recalibrated for each."""
    images = global_images(calibration_images(config, train_data))
    out = {"accuracy_by_width": {}, "flops_by_width": {}, "params_by_width": {}}
    for ratio in config.pruning.report_widths:
        ratios = uniform_ratios(task.graph, ratio)
        key = f"{ratio:g}"
        out["accuracy_by_width"][key] = evaluate_configuration(task, params, ratios, images,
                                                               eval_data.eval_batches(config.eval_batch_size))
        cost = network_cost(task.graph, np.asarray(group_channels(task.graph, ratios)))
        out["flops_by_width"][key], out["params_by_width"][key] = cost["flops"], cost["params"]
    return out


def restore_params(workdir: str) -> Tuple[Run, PruningTask, dict]:
    """(run, task, PruningNet params) of the newest checkpoint of the pruning run in
    ``workdir``."""
    run = Run.restore(workdir)
    task = pruning_task(run.config, run.train_data.num_classes)
    return run, task, run.restored_state(task).params


def export_from_workdir(workdir: str, widths_path: str, out_dir: str) -> dict:
    """Exports configuration ``widths_path`` of the PruningNet trained in ``workdir`` to
    ``out_dir`` (``save_network`` layout plus ``widths.json`` and ``report.json``)."""
    run, task, params = restore_params(workdir)
    config = run.config
    ratios = load_widths(widths_path, task.graph, task.grid)
    variables, channels = configuration_variables(task, params, ratios,
                                                  global_images(calibration_images(config, run.train_data)))
    model, pruned = export_network(task.spec, task.graph, variables, channels)
    images = global_images([next(run.eval_data.eval_batches(config.eval_batch_size))["image"]])[0]
    with jax.default_matmul_precision("highest"):  # both in float32, whatever the run's compute dtype
        reference = jax.jit(lambda v, c, x: masked_apply(task.spec.model(), task.graph, v, c, x, False))(
            variables, channels, images)
        exported = jax.jit(lambda v, x: model.apply(v, x, train=False))(pruned, images)
    channels = np.asarray(channels, np.int64)
    cost, full = network_cost(task.graph, channels), network_cost(task.graph, full_channels(task.graph))
    report = {"max_abs_diff_vs_masked": float(jnp.max(jnp.abs(exported - reference))),
              "flops": cost["flops"], "params": cost["params"], "flops_ratio": cost["flops"] / full["flops"],
              "params_ratio": cost["params"] / full["params"], "full_flops": full["flops"],
              "full_params": full["params"], "flops_unit": "multiply-accumulates"}
    save_network(out_dir, task.spec, model, pruned)
    with open(widths_path) as src:
        write_text_atomic(os.path.join(out_dir, "widths.json"), src.read())
    write_json_atomic(os.path.join(out_dir, "report.json"), report, indent=1)
    return report
