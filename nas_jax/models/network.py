"""A network on disk: which model (zoo or a user's), at which widths, with which variables.

``ZooSpec`` names a zoo model (``name``, ``num_classes``, nominal ``width``) and the square
NHWC image size it runs on. A network directory (``save_network`` / ``load_network``), as
``nas-jax prune export`` and ``nas-jax import`` write it and ``config.init_from`` reads it:
``model.json`` (the ``ZooSpec``, the per-layer ``widths`` overrides, the ``block`` kind and
a RepNAS ``branch_mask``; for a user model, its ``CustomSpec`` and ``AtWidths`` overrides,
or an NNX model's variable ``shapes``)
and ``variables.npz`` (one array per variable, keyed by its
``/``-joined path, e.g. ``params/stage0/conv1/conv/kernel``); for an NNX model also
``nnx_state/``, the orbax checkpoint of its own module (``load_nnx_network``).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Tuple, Union

import flax.linen as nn
import jax
import numpy as np
from flax import traverse_util

from nas_jax.common import write_json_atomic
from nas_jax.models import create_model
from nas_jax.models.custom import CustomSpec
from nas_jax.models.nnx_model import NNXModel, load_nnx, save_nnx, to_nnx

NNX_STATE = "nnx_state"  # an NNX model's state in a network directory (orbax)


@dataclasses.dataclass(frozen=True)
class ZooSpec:
    """A zoo model by ``name`` at ``width`` with ``num_classes`` outputs, on square NHWC
    images of ``image_size`` (FLOPs depend on it)."""
    name: str
    num_classes: int = 1000
    width: float = 1.0
    image_size: int = 224

    def model(self, block: str = "plain", widths: Tuple[Tuple[str, int], ...] = ()) -> nn.Module:
        """The zoo model; ``widths`` overrides layer output widths (a pruned network)."""
        return create_model(self.name, block=block, num_classes=self.num_classes, width=self.width,
                            widths=tuple(widths))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> "ZooSpec":
        return cls(**{f.name: doc[f.name] for f in dataclasses.fields(cls)})


def save_network(directory: str, spec: Union[ZooSpec, CustomSpec], model: nn.Module, variables) -> None:
    """Writes ``model`` (``spec``'s zoo model at its widths, block kind and branch mask, or
    a user model, ``AtWidths`` or not) and its ``variables`` to ``directory``."""
    os.makedirs(directory, exist_ok=True)
    if isinstance(spec, CustomSpec):
        overrides = getattr(model, "overrides", ())
        doc = {"custom": spec.to_json(), "overrides": [[path, dict(changes)] for path, changes in overrides],
               "shapes": [[path, list(shape)] for path, shape in getattr(model, "shapes", ())]}
    else:
        doc = {**spec.to_json(), "widths": [list(w) for w in model.widths], "block": model.block,
               "branch_mask": [[path, list(mask)] for path, mask in model.branch_mask]}
    write_json_atomic(os.path.join(directory, "model.json"), doc, indent=1)
    flat = traverse_util.flatten_dict(variables, sep="/")
    arrays = {k: np.asarray(v) for k, v in flat.items()}  # every process takes part (replicated arrays)
    if jax.process_index() == 0:
        np.savez(os.path.join(directory, "variables.npz"), **arrays)
    if isinstance(model, NNXModel):  # also the user's own NNX module, resized, as an orbax checkpoint
        save_nnx(os.path.abspath(os.path.join(directory, NNX_STATE)), to_nnx(model, variables))


def load_nnx_network(directory: str):
    """The user's NNX module of a network directory written from an NNX model: its own
    class at the pruned sizes, with the state of the orbax checkpoint ``NNX_STATE``."""
    _, model, _ = load_network(directory)
    if not isinstance(model, NNXModel):
        raise ValueError(f"{directory} holds no NNX model")
    return load_nnx(os.path.abspath(os.path.join(directory, NNX_STATE)), model)


def load_network(directory: str) -> Tuple[Union[ZooSpec, CustomSpec], nn.Module, dict]:
    """(spec, model at its widths, block kind and branch mask, variables) written by
    ``save_network``."""
    with open(os.path.join(directory, "model.json")) as f:
        doc = json.load(f)
    with np.load(os.path.join(directory, "variables.npz")) as data:
        variables = traverse_util.unflatten_dict({k: data[k] for k in data.files}, sep="/")
    if "custom" in doc:
        spec = CustomSpec.from_json(doc["custom"])
        overrides = tuple((path, tuple(changes.items())) for path, changes in doc["overrides"])
        shapes = tuple((path, tuple(shape)) for path, shape in doc.get("shapes", []))
        return spec, spec.model("plain", overrides, shapes), variables
    spec = ZooSpec.from_json(doc)
    model = spec.model(doc.get("block", "plain"), tuple((p, int(c)) for p, c in doc["widths"]))
    mask = tuple((path, tuple(bool(b) for b in m)) for path, m in doc.get("branch_mask", []))
    return spec, model.clone(branch_mask=mask), variables
