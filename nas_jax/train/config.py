"""Experiment configs: a Python file with ``get_config() -> ml_collections.ConfigDict``,
overridden from the command line by ``--config.key=value`` / ``--config.a.b=value``.

An override must name an existing key, and its value must parse as the key's current
type (``int``, ``float`` - ints accepted -, ``bool`` - true/false/1/0 -, ``str``, or a
tuple / list literal); anything else is a ``ConfigError`` raised before a run starts.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
from typing import Iterable

import ml_collections

OVERRIDE_PREFIX = "--config."


class ConfigError(ValueError):
    pass


def load_config(path: str) -> ml_collections.ConfigDict:
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found")
    spec = importlib.util.spec_from_file_location(f"_config_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} has no get_config()")
    return module.get_config()


def _parse_value(key: str, text: str, current):
    kind = type(current)
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if isinstance(current, str):
            return text
        value = ast.literal_eval(text)
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(current, (tuple, list)) and isinstance(value, (tuple, list)):
            value = kind(value)
        if type(value) is not kind:
            raise ValueError
        return value
    except (ValueError, SyntaxError):
        raise ConfigError(f"--config.{key}={text!r}: expected a value of type {kind.__name__} "
                          f"(current value {current!r})") from None


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> ml_collections.ConfigDict:
    """A copy of ``config`` with ``["--config.key=value", ...]`` (or ``"key=value"``) applied."""
    config = ml_collections.ConfigDict(config.to_dict())
    for item in overrides:
        body = item[len(OVERRIDE_PREFIX):] if item.startswith(OVERRIDE_PREFIX) else item
        if "=" not in body:
            raise ConfigError(f"override {item!r} must look like --config.key=value")
        key, text = body.split("=", 1)
        *parents, leaf = key.split(".")
        node = config
        for i, part in enumerate(parents):
            if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
                raise ConfigError(f"unknown config key {'.'.join(parents[:i + 1])!r} in {item!r}")
            node = node[part]
        if leaf not in node or isinstance(node[leaf], ml_collections.ConfigDict):
            raise ConfigError(f"unknown config key {key!r} in {item!r}; known keys: {sorted(node.keys())}")
        node[leaf] = _parse_value(key, text, node[leaf])
    return config


def config_to_json(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json())


def config_from_json(data: dict) -> ml_collections.ConfigDict:
    """Inverse of ``config_to_json`` (JSON lists become tuples, as configs write them)."""
    def fix(v):
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        return tuple(fix(x) for x in v) if isinstance(v, list) else v
    return ml_collections.ConfigDict(fix(data))


def default_config() -> ml_collections.ConfigDict:
    """Every key ``nas_jax.train.train`` reads, with defaults; experiment files start here."""
    c = ml_collections.ConfigDict()
    # model: any zoo model and block kind; dtype is the compute dtype (params stay float32)
    c.model, c.block, c.width, c.dtype = "resnet18", "plain", 1.0, "float32"
    # data (see nas_jax.data.create_pipeline); image_size 0 = the dataset's own
    c.dataset, c.data_dir, c.image_size, c.num_workers, c.augment = "digits", "", 0, 0, True
    c.num_classes = 10  # synthetic data only; real datasets know theirs
    c.train_split, c.eval_split = "train", "validation"
    c.batch_size, c.eval_batch_size = 64, 128  # global
    # length: num_steps if > 0, else num_epochs of the training split
    c.num_steps, c.num_epochs = 0, 1.0
    # optimiser (nas_jax.train.optim)
    c.optimizer, c.learning_rate, c.momentum, c.nesterov = "sgd", 0.1, 0.9, False
    c.weight_decay, c.warmup_steps, c.grad_clip_norm = 1e-4, 0, 0.0
    c.adam_b1, c.adam_b2 = 0.9, 0.999
    c.label_smoothing = 0.0
    # fine-tune: a network directory (`nas-jax prune export` / `nas-jax import`; replaces
    # model/width); block dbb, orepa, repnas or repnas_online turns a plain network's layers into branches
    # that start as the same function
    c.init_from = ""
    c.seed = 0
    # skip XLA's algebraic simplifier for the steps on the CPU (nas_jax.train.step)
    c.cpu_skip_algsimp = True
    # bookkeeping, in steps (eval_every 0 = only at the end)
    c.log_every, c.eval_every, c.checkpoint_every, c.max_to_keep = 10, 0, 500, 3
    return c
