"""A user's own linen model, named ``package.module:function`` like a registry entry, or
``path/to/file.py:function`` (a file that need not be on ``PYTHONPATH``).

The function is called as ``function(num_classes=N, **model_kwargs)`` and returns a linen
module that is called as the zoo's are: ``module(images, train=...)`` on NHWC images,
with BatchNorm statistics in ``batch_stats`` (``nas_jax.models.contract``, checked on the
first build). Its layer sizes are plain ints in its own code; ``nas_jax.models.AtWidths``
runs it at other widths.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
from typing import Any, Callable, Tuple

import flax.linen as nn

from nas_jax.models.at_widths import Overrides, at_widths
from nas_jax.models.contract import check_model


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

    def model(self, block: str = "plain", overrides: Overrides = ()) -> nn.Module:
        """The user's module (``block`` must be plain: a user model builds its own
        blocks), at the ``AtWidths`` ``overrides`` if any."""
        if block != "plain":
            raise ValueError(f"model {self.target}: block={block!r} applies to zoo models only; a user model "
                             "builds its own blocks from nas_jax.rep")
        module = load_function(self.target)(num_classes=self.num_classes, **dict(self.model_kwargs))
        if not isinstance(module, nn.Module):
            raise ValueError(f"model {self.target} returned {type(module).__name__}, not a flax.linen Module")
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
