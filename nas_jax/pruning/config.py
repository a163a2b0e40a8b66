"""The ``pruning`` section of a Graph PruningNet training config (``c.pruning``); the rest
of the config is the training loop's (``nas_jax.train.config.default_config``)."""
from __future__ import annotations

import ml_collections


def pruning_section(**overrides) -> ml_collections.ConfigDict:
    """Keys:

    grid_start, grid_stop, grid_step: the width ratios every prunable group draws from;
    gcn_features, gcn_depth, generator_hidden: the size of the PruningNet;
    calibration_batches: training batches BatchNorm statistics are recalibrated on before
      any evaluation of a configuration;
    configurations_per_step: configurations drawn per step, each on its own part of the
      batch (the number of devices on a pod gives one per device shard; 1 is fastest on a CPU);
    report_widths: the uniform widths ``report.json`` gives the accuracy of;
    keep_full: paths of layers kept at full width (and whatever feeds them through an op the
      layer graph cannot follow), e.g. ``("head/conv",)``.
    """
    p = ml_collections.ConfigDict()
    p.grid_start, p.grid_stop, p.grid_step = 0.1, 1.0, 0.05
    p.gcn_features, p.gcn_depth, p.generator_hidden = 32, 2, 32
    p.calibration_batches = 10
    p.configurations_per_step = 1
    p.report_widths = (0.25, 0.5, 0.75, 1.0)
    p.keep_full = ()
    for key, value in overrides.items():
        if key not in p:
            raise KeyError(f"unknown pruning config key {key!r}; known: {sorted(p.keys())}")
        p[key] = value
    return p
