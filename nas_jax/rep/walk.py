"""The one layer walker: run a model with its top-level layers wrapped.

``intercept_modules(hooks)`` wraps, within the context, every call of a module that is an
instance of one of the ``hooks``' types and is not called from inside another wrapped
module (a DBB's branches are part of the DBB): it runs as ``hook(module, call, x)``, where
``call(x)`` runs the module on its input ``x`` with its other arguments kept. Fusion
(``fused_kernels``), RepNAS layer discovery, the pruning layer graph and the masked
pruning forward all walk models this way.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Sequence, Tuple

import flax.linen as nn

Hook = Callable[[nn.Module, Callable, object], object]


@contextlib.contextmanager
def intercept_modules(hooks: Sequence[Tuple[Tuple[type, ...], Hook]]):
    """See the module doc; ``hooks``: ``((module types, hook), ...)``, the first match wins."""
    depth = [0]

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        hook = next((h for types, h in hooks if isinstance(module, types)), None)
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
