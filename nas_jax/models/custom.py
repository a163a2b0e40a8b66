"""A user's own linen model, named ``package.module:function`` like a registry entry, or
``path/to/file.py:function`` (a file that need not be on ``PYTHONPATH``).

The function is called as ``function(num_classes=N, **model_kwargs)`` and returns a linen
module that is called as the zoo's are: ``module(images, train=...)`` on NHWC images,
with BatchNorm statistics in ``batch_stats`` (``nas_jax.models.contract``, checked on the
first build). A function with an ``rngs`` parameter builds a Flax NNX model instead
(``function(num_classes=N, rngs=nnx.Rngs(...), **model_kwargs)``, called as
``module(images)``), which runs as a linen model through ``nas_jax.models.nnx_model``. Its layer sizes are plain ints in its own code; ``nas_jax.models.AtWidths``
runs it at other widths.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import importlib.util
import os
import sys
from typing import Any, Callable, Tuple

import flax.linen as nn

from nas_jax.models.at_widths import Overrides, at_widths
from nas_jax.models.contract import check_model
from nas_jax.models.nnx_model import NNXModel, Shapes


_CHECKED: set = set()  # the specs whose models passed ``check_model`` in this process


def is_custom(name: str) -> bool:
    """Whether a model name is a ``package.module:function`` reference."""
    return ":" in name


def _import_file(path: str):
    """The module of Python file ``path``, imported once per absolute path."""
    path = os.path.abspath(path)
    name = "nas_jax_user_model_" + "".join(c if c.isalnum() else "_" for c in path)
    if name not in sys.modules:
        if not os.path.isfile(path):
            raise ValueError(f"model file {path} does not exist")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def takes_rngs(function: Callable) -> bool:
    """Whether ``function`` has an ``rngs`` parameter (it builds a Flax NNX model)."""
    try:
        return "rngs" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def load_function(target: str) -> Callable[..., nn.Module]:
    """The function ``target`` (``package.module:function`` or ``file.py:function``) names."""
    module_name, _, attribute = target.rpartition(":")
    if not module_name or not attribute:
        raise ValueError(f"model {target!r}: expected 'package.module:function' or 'path/to/file.py:function'")
    if module_name.endswith(".py"):
        module = _import_file(module_name)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(f"model {target!r}: cannot import {module_name!r} ({err}); is its directory on "
                             "PYTHONPATH or the package installed?") from err
    function = module
    for part in attribute.split("."):
        if not hasattr(function, part):
            raise ValueError(f"model {target!r}: {module_name} has no {attribute!r}")
        function = getattr(function, part)
    return function


@dataclasses.dataclass(frozen=True)
class CustomSpec:
    """A user's model ``target`` with ``num_classes`` outputs and ``model_kwargs``, on
    square NHWC images of ``image_size``."""
    target: str
    num_classes: int
    image_size: int = 224
    model_kwargs: Tuple[Tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return self.target

    @property
    def is_nnx(self) -> bool:
        """Whether the function builds a Flax NNX model: it takes ``rngs``."""
        return takes_rngs(load_function(self.target))

    def model(self, block: str = "plain", overrides: Overrides = (), shapes: Shapes = ()) -> nn.Module:
        """The user's module (``block`` must be plain: a user model builds its own
        blocks), at the ``AtWidths`` ``overrides`` if any; an NNX model as an ``NNXModel``,
        at the variable ``shapes`` of a pruned network if any."""
        if block != "plain":
            raise ValueError(f"model {self.target}: block={block!r} applies to zoo models only; a user model "
                             "builds its own blocks from nas_jax.rep")
        function = load_function(self.target)
        if takes_rngs(function):
            if overrides:
                raise ValueError(f"model {self.target} is an NNX model: it is resized by variable shapes, not "
                                 "AtWidths overrides")
            module = NNXModel(function, self.num_classes, self.model_kwargs, tuple(shapes), self.target)
        else:
            module = function(num_classes=self.num_classes, **dict(self.model_kwargs))
        if not isinstance(module, nn.Module):
            raise ValueError(f"model {self.target} returned {type(module).__name__}, not a flax.linen Module "
                             "(an NNX model's function takes `rngs`: function(num_classes, rngs))")
        if self not in _CHECKED:
            check_model(module, (2, self.image_size, self.image_size, 3), self.num_classes, self.target)
            _CHECKED.add(self)
        return at_widths(module, overrides)

    def to_json(self) -> dict:
        return {"target": self.target, "num_classes": self.num_classes, "image_size": self.image_size,
                "model_kwargs": dict(self.model_kwargs)}

    @classmethod
    def from_json(cls, doc: dict) -> "CustomSpec":
        return cls(doc["target"], doc["num_classes"], doc["image_size"],
                   tuple(sorted(doc.get("model_kwargs", {}).items())))
