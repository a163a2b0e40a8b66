"""Any linen model at other layer widths, without a width argument in its code.

``AtWidths(model, overrides)`` runs ``model`` with chosen ``nn.Conv`` / ``nn.Dense`` /
``nn.MultiHeadDotProductAttention`` submodules rebuilt with other attributes (``features``,
a depthwise conv's ``feature_group_count``, an attention's ``num_heads``): each overridden call is a copy of the submodule with those
attributes, bound to the submodule's own scope (same variables, same paths, also for an
attention's projections). Its variables therefore have the
overridden, really smaller shapes, in the same tree as ``model``'s (the wrapper shares
the model's scope: no extra path level), and modules that size themselves from their
input (BatchNorm, LayerNorm, GroupNorm, a following conv) follow. ``init`` creates them
at those shapes.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Tuple

import flax.linen as nn

RESIZABLE = (nn.Conv, nn.Dense, nn.MultiHeadDotProductAttention)  # the modules overrides apply to
Overrides = Tuple[Tuple[str, Tuple[Tuple[str, int], ...]], ...]  # ((module path, ((attribute, value), ...)), ...)


WRAPPER_FIELDS = ("model", "unfolded")  # the fields of AtWidths and rep.fold_batch_norms.FoldedBatchNorms


def _changes(overrides: Dict[str, Dict[str, int]], path: Tuple[str, ...]):
    """The overrides of the module at ``path``. Flax names a submodule that a model holds in
    a field (not one built inside its ``__call__``) under the field of each wrapper around
    it (``model/...``), though its variables live at the model's own paths (the wrappers
    share its scope): leading wrapper fields are dropped until a path matches."""
    for start in range(len(path)):
        changes = overrides.get("/".join(path[start:]))
        if changes is not None or path[start] not in WRAPPER_FIELDS:
            return changes
    return None


@contextlib.contextmanager
def override_attributes(overrides: Dict[str, Dict[str, int]]):
    """Within the context, a call of a ``RESIZABLE`` module whose ``/``-joined path
    is a key of ``overrides`` runs as that module with the attributes replaced."""

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        changes = _changes(overrides, module.path) if context.method_name == "__call__" else None
        if (changes is None or not isinstance(module, RESIZABLE)
                or all(getattr(module, k) == v for k, v in changes.items())):  # the resized copy itself
            return next_fun(*args, **kwargs)
        return module.clone(parent=module.scope, **changes)(*args, **kwargs)  # same scope: same paths

    with nn.intercept_methods(interceptor):
        yield


class AtWidths(nn.Module):
    """``model`` with the submodule attributes of ``overrides`` replaced."""
    model: nn.Module
    overrides: Overrides = ()

    def setup(self):
        nn.share_scope(self, self.model)

    def __call__(self, *args, **kwargs):
        with override_attributes({path: dict(changes) for path, changes in self.overrides}):
            return self.model(*args, **kwargs)


def at_widths(model: nn.Module, overrides: Overrides) -> nn.Module:
    """``model`` with the attributes of ``overrides`` replaced: ``AtWidths(model, overrides)``,
    or, for a model that is an ``AtWidths`` already (a user's model run at other widths),
    one ``AtWidths`` whose overrides are its own updated with ``overrides``."""
    if not overrides:
        return model
    if isinstance(model, AtWidths):
        merged = {path: dict(changes) for path, changes in model.overrides}
        for path, changes in overrides:
            merged.setdefault(path, {}).update(dict(changes))
        return model.clone(overrides=tuple((p, tuple(sorted(c.items()))) for p, c in sorted(merged.items())))
    return AtWidths(model, overrides)
