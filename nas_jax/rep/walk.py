"""The one layer walker: run a model with its top-level layers wrapped.

``intercept_modules(hooks)`` wraps, within the context, every call of a module that one of
the ``hooks`` matches (by type or predicate) and is not called from inside another wrapped
module (a DBB's branches are part of the DBB): it runs as ``hook(module, call, x)``, where
``call(x)`` runs the module on its input ``x`` with its other arguments kept. Fusion
(``fused_kernels``), RepNAS layer discovery, the pruning layer graph and the masked
pruning forward all walk models this way.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Optional, Sequence, Tuple

import flax.linen as nn

Hook = Callable[[nn.Module, Callable, object], object]


@contextlib.contextmanager
def intercept_modules(hooks: Sequence[Tuple[Tuple[type, ...], Hook]]):
    """See the module doc; ``hooks``: ``((match, hook), ...)``, ``match`` a tuple of module
    types or a predicate on the module; the first match wins."""
    depth = [0]

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        hook = next((h for match, h in hooks
                     if (isinstance(module, match) if isinstance(match, tuple) else match(module))), None)
        if context.method_name != "__call__" or hook is None or depth[0] > 0:
            return next_fun(*args, **kwargs)

        def call(x):
            depth[0] += 1
            try:
                return next_fun(x, *args[1:], **kwargs)
            finally:
                depth[0] -= 1

        return hook(module, call, args[0])

    with nn.intercept_methods(interceptor):
        yield


def norm_kind(module: nn.Module) -> Optional[str]:
    """``'batch'``, ``'layer'`` or ``'group'`` for a normalisation the graph follows, else
    None. Besides flax's classes, a bound module with a ``use_running_average`` attribute
    and its own ``batch_stats`` ``mean`` and ``var`` (a BatchNorm written outside flax, as
    in the flaxmodels package) is a ``'batch'`` one: nas_jax recalibrates and folds it as
    flax's (``(x - mean) * scale / sqrt(var + epsilon) + bias`` in eval mode)."""
    for types, kind in ((nn.BatchNorm, "batch"), (nn.LayerNorm, "layer"), (nn.GroupNorm, "group")):
        if isinstance(module, types):
            return kind
    fields = {f.name for f in dataclasses.fields(module)}  # not getattr: a module's __getattr__ may call back
    if ("use_running_average" in fields and module.scope is not None
            and module.has_variable("batch_stats", "mean") and module.has_variable("batch_stats", "var")):
        return "batch"
    return None
