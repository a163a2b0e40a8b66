"""A user's Flax NNX model run as a linen model, so that every nas_jax tool takes it.

``NNXModel(target, num_classes, model_kwargs, shapes)`` is a linen module whose call
``model(images, train=...)``:

1. builds the user's NNX module, ``function(num_classes=N, rngs=nnx.Rngs(...), **kwargs)``
   (as ``nnx.bridge.ToLinen`` does, on every call: the initialisers are traced, not run,
   under ``jit``), at the variable ``shapes`` if given (``resize``: a pruned network);
2. sets every ``nnx.Param`` and ``nnx.BatchStat`` to the linen variable at the same
   path (``params`` / ``batch_stats``; list indices become strings: ``blocks/0/conv/kernel``);
   at ``init`` it creates those linen variables from the NNX module's own initial values;
3. switches it with ``module.train()`` or ``module.eval()`` and calls ``module(images)``.

While it runs, each standard NNX layer (``LINEN_TWINS``: ``nnx.Conv``, ``nnx.Linear``,
``nnx.LinearGeneral``, ``nnx.BatchNorm``, ``nnx.LayerNorm``, ``nnx.GroupNorm``) computes
through its linen twin (``nn.Conv``, ``nn.Dense``, ...), built from the layer's attributes
and bound at the layer's path, on the same variables (an ``nnx.MultiHeadAttention`` runs
as NNX inside an ``NNXAttention`` stand-in, its four projections through their twins):
the layer graph, the masked pruning forward, BatchNorm recalibration and folding see an
NNX model's layers as they see a linen model's. Everything else in the model (its own
arithmetic, ``nnx.Param`` attributes such as a position embedding, other modules) runs as
NNX. ``tests/test_nnx_and_vit.py`` checks the twins against the NNX classes in float64.
Dropout draws from the ``dropout`` RNG the training steps pass; a model with active
dropout called in train mode without one is refused.

``resize(module, shapes)`` is the pruned network as the user's own NNX class: every
variable at its new shape and each standard layer's size attributes (``in_features``,
``out_features``, ``num_features``, ``feature_group_count``, ``num_heads``,
``qkv_features``) updated to match; ``nas_jax.models.network.save_network`` writes it as
an orbax checkpoint too and ``load_nnx_network`` reloads it.
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
from typing import Any, Callable, Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx, traverse_util

COLLECTION_OF = ((nnx.BatchStat, "batch_stats"), (nnx.Param, "params"))  # BatchStat before Param: no overlap
Shapes = Tuple[Tuple[str, Tuple[int, ...]], ...]  # ((variable path without collection, shape), ...)


class NNXContractError(ValueError):
    """An NNX model nas_jax cannot run."""


def collection_of(variable: nnx.Variable):
    """``'params'`` / ``'batch_stats'`` for a variable kept as a linen variable, None for RNG
    state (rebuilt on every call); an ``NNXContractError`` for other kinds."""
    for kind, collection in COLLECTION_OF:
        if isinstance(variable, kind):
            return collection
    if isinstance(variable, nnx.RngState):
        return None
    raise NNXContractError(f"it keeps a {type(variable).__name__} variable; nas_jax trains and saves nnx.Param and "
                           "nnx.BatchStat only")


def graph_items(module: nnx.Module):
    """(``{id(submodule): path}``, ``[(path, variable)]``) of an NNX module; paths are tuples
    of strings (the first path of a shared node)."""
    modules, variables = {}, []
    for path, node in nnx.iter_graph(module):
        path = tuple(str(p) for p in path)
        if isinstance(node, nnx.Module):
            modules.setdefault(id(node), path)
        elif isinstance(node, nnx.Variable) and path[-1] not in ("_pytree__state", "_pytree__nodes"):
            variables.append((path, node))
    return modules, variables


# --- the linen twins --------------------------------------------------------------------------------------

def _common(m, *names) -> dict:
    """The layer's dtypes and ``names``; ``parent=None``: the twin is bound where it is called."""
    return {"parent": None, **{n: getattr(m, n) for n in ("dtype", "param_dtype", *names)}}


NO_TWIN_OPTIONS = ("mask", "preferred_element_type", "dot_general", "dot_general_cls", "conv_general_dilated",
                   "promote_dtype", "axis_index_groups", "qkv_dot_general", "out_dot_general", "qkv_dot_general_cls",
                   "out_dot_general_cls", "qkv_promote_dtype", "out_promote_dtype")


def _refuse(m) -> None:
    """An ``NNXContractError`` where a layer option with no linen twin is not its default."""
    parameters = inspect.signature(type(m).__init__).parameters
    for name in NO_TWIN_OPTIONS:
        if name in parameters and name in vars(m) and getattr(m, name) is not parameters[name].default:
            raise NNXContractError(f"{type(m).__name__} with a non-default {name} has no linen twin; nas_jax follows "
                                   "it with its default only")


def _conv(m: nnx.Conv):
    _refuse(m)
    return nn.Conv(m.out_features, m.kernel_size, m.strides, m.padding, m.input_dilation, m.kernel_dilation,
                   m.feature_group_count, m.use_bias, **_common(m, "precision"))


def _linear(m: nnx.Linear):
    _refuse(m)
    return nn.Dense(m.out_features, m.use_bias, **_common(m, "precision"))


def _linear_general(m: nnx.LinearGeneral):
    _refuse(m)
    if m.batch_axis:
        raise NNXContractError("LinearGeneral with batch_axis has no linen twin")
    return nn.DenseGeneral(m.out_features, m.axis, use_bias=m.use_bias, **_common(m, "precision"))


def _batch_norm(m: nnx.BatchNorm):
    _refuse(m)
    return nn.BatchNorm(m.use_running_average, m.axis, m.momentum, m.epsilon, use_bias=m.use_bias,
                        use_scale=m.use_scale, axis_name=m.axis_name, use_fast_variance=m.use_fast_variance,
                        **_common(m))


def _layer_norm(m: nnx.LayerNorm):
    _refuse(m)
    return nn.LayerNorm(m.epsilon, use_bias=m.use_bias, use_scale=m.use_scale, reduction_axes=m.reduction_axes,
                        feature_axes=m.feature_axes, axis_name=m.axis_name, use_fast_variance=m.use_fast_variance,
                        **_common(m))


def _group_norm(m: nnx.GroupNorm):
    _refuse(m)
    return nn.GroupNorm(m.num_groups, None, m.epsilon, use_bias=m.use_bias, use_scale=m.use_scale,
                        reduction_axes=m.reduction_axes, axis_name=m.axis_name,
                        use_fast_variance=m.use_fast_variance, **_common(m))


class NNXAttention(nn.Module):
    """The stand-in of an ``nnx.MultiHeadAttention`` call: it runs the NNX attention itself
    (``run``; its query, key, value and out ``LinearGeneral`` projections compute through
    their twins) and shows the layer graph a multi-head attention at this path, as
    ``nn.MultiHeadDotProductAttention`` does."""
    num_heads: int
    decode: bool = False
    normalize_qk: bool = False

    def __call__(self, inputs_q, inputs_k=None, inputs_v=None, *, run: Callable, **kwargs):
        return run(inputs_q, inputs_k, inputs_v, **kwargs)


def _attention(m: nnx.MultiHeadAttention):
    _refuse(m)
    if m.num_kv_heads not in (None, m.num_heads):
        raise NNXContractError("MultiHeadAttention with num_kv_heads other than num_heads (grouped-query "
                               "attention) cannot be pruned yet")
    return NNXAttention(m.num_heads, bool(m.decode), bool(m.normalize_qk), parent=None)


def _call_attention(twin, m, *args, **kwargs):
    return twin(*args, run=lambda *a, **k: ORIGINAL_CALLS[nnx.MultiHeadAttention](m, *a, **k), **kwargs)


def _call_batch_norm(twin, m, x, use_running_average=None, *, mask=None):
    return twin(x, use_running_average, mask=mask)


def _call_layer(twin, m, x, out_sharding=None):
    if out_sharding is not None:
        raise NNXContractError(f"{type(m).__name__} called with out_sharding: nas_jax shards the batch itself")
    return twin(x)


LINEN_TWINS: Dict[type, Tuple[Callable, Callable]] = {  # NNX class -> (twin builder, call)
    nnx.Conv: (_conv, _call_layer),
    nnx.Linear: (_linear, _call_layer),
    nnx.LinearGeneral: (_linear_general, _call_layer),
    nnx.BatchNorm: (_batch_norm, _call_batch_norm),
    nnx.LayerNorm: (_layer_norm, lambda twin, m, x, *, mask=None: twin(x, mask=mask)),
    nnx.GroupNorm: (_group_norm, lambda twin, m, x, *, mask=None: twin(x, mask=mask)),
    nnx.MultiHeadAttention: (_attention, _call_attention),
}


ORIGINAL_CALLS = {cls: cls.__call__ for cls in LINEN_TWINS}
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("nas_jax_nnx_twins", default=None)


def _dispatching(cls):
    """``cls.__call__`` that runs the linen twin while a ``linen_twins`` context is active."""
    build_twin, call = LINEN_TWINS[cls]

    def __call__(m, *args, **kwargs):
        active = _ACTIVE.get()
        if active is None:
            return ORIGINAL_CALLS[cls](m, *args, **kwargs)
        paths, scope_at = active
        path = paths.get(id(m))
        if path is None:
            raise NNXContractError(f"an {cls.__name__} that is no attribute of the model (built inside __call__, or "
                                   "under nnx.scan / nnx.vmap) runs: nas_jax follows the layers it finds on the "
                                   "model's attributes only")
        return call(build_twin(m).clone(parent=scope_at(path)), m, *args, **kwargs)
    return __call__


for _cls in LINEN_TWINS:  # installed once: outside a linen_twins context they are the NNX calls
    _cls.__call__ = _dispatching(_cls)


@contextlib.contextmanager
def linen_twins(paths: Dict[int, Tuple[str, ...]], scope_at: Callable):
    """Within the context (this thread's, nestable), a call of a standard NNX layer whose id
    is in ``paths`` runs as its linen twin bound to ``scope_at(path)``."""
    token = _ACTIVE.set((paths, scope_at))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


# --- a pruned NNX network ---------------------------------------------------------------------------------

def _resize_attributes(m: nnx.Module) -> None:
    """Sets a standard layer's size attributes from its (resized) variables."""
    if isinstance(m, nnx.Conv):
        in_per_group, out = m.kernel.get_value().shape[-2:]
        if m.feature_group_count == m.in_features == m.out_features > 1:  # depthwise: one group per channel
            m.feature_group_count = out
        m.in_features, m.out_features = in_per_group * m.feature_group_count, out
        m.kernel_shape = tuple(m.kernel.get_value().shape)
    elif isinstance(m, nnx.Linear):
        m.in_features, m.out_features = m.kernel.get_value().shape
    elif isinstance(m, nnx.LinearGeneral):
        n_in = len(m.in_features)
        m.in_features, m.out_features = tuple(m.kernel.get_value().shape[:n_in]), tuple(m.kernel.get_value().shape[n_in:])
    elif isinstance(m, (nnx.BatchNorm, nnx.LayerNorm, nnx.GroupNorm)):
        sized = m.scale if m.use_scale else m.bias if m.use_bias else getattr(m, "mean", None)
        if sized is None:
            raise NNXContractError(f"a {type(m).__name__} without scale or bias cannot be resized (its width is in "
                                   "no variable)")
        m.num_features = sized.get_value().shape[-1]
        if isinstance(m, nnx.GroupNorm):
            m.group_size = m.num_features // m.num_groups
    elif isinstance(m, nnx.MultiHeadAttention):
        in_features, heads, head_dim = m.query.kernel.get_value().shape
        m.num_heads, m.head_dim, m.qkv_features = heads, head_dim, heads * head_dim
        m.in_features, m.in_kv_features = in_features, m.key.kernel.get_value().shape[0]
        m.out_features = m.out.kernel.get_value().shape[-1]
        if m.num_kv_heads is not None:
            m.num_kv_heads = heads


def resize(module: nnx.Module, shapes: Dict[str, Tuple[int, ...]]) -> nnx.Module:
    """``module`` with every variable named in ``shapes`` (``{'/'-joined path: shape}``)
    set to zeros of that shape, and its standard layers' size attributes updated; in place."""
    if not shapes:
        return module
    for path, variable in graph_items(module)[1]:
        shape = shapes.get("/".join(path))
        if shape is not None and tuple(variable.get_value().shape) != tuple(shape):
            variable.set_value(jnp.zeros(shape, variable.get_value().dtype))
    for path, m in nnx.iter_graph(module):
        if isinstance(m, tuple(LINEN_TWINS)):
            _resize_attributes(m)
    return module


def build(function: Callable, num_classes: int, kwargs: dict, rngs: nnx.Rngs, shapes: Shapes = (),
          name: str = "") -> nnx.Module:
    """``function(num_classes=..., rngs=..., **kwargs)`` at ``shapes``, checked to be an NNX module."""
    module = function(num_classes=num_classes, rngs=rngs, **kwargs)
    if not isinstance(module, nnx.Module):
        raise NNXContractError(f"model {name}: the function takes `rngs` (an NNX model) but returned "
                               f"{type(module).__name__}, not an nnx.Module")
    return resize(module, dict(shapes))


def has_dropout(module: nnx.Module) -> bool:
    """Whether ``module`` (in train mode) drops anything: an ``nnx.Dropout`` or an attention
    with a positive rate that is not deterministic."""
    return any((isinstance(m, nnx.Dropout) and m.rate > 0 and not m.deterministic)
               or (isinstance(m, nnx.MultiHeadAttention) and m.dropout_rate > 0 and not m.deterministic)
               for _, m in nnx.iter_graph(module))


def call_problem(module: nnx.Module) -> str:
    """Why ``module(images)`` cannot be called, or ''."""
    try:
        parameters = list(inspect.signature(type(module).__call__).parameters.values())[1:]
    except (TypeError, ValueError):
        return ""
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p.name for p in parameters if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL,
                                                                                     p.VAR_KEYWORD)]
    if not positional and not any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return f"its __call__{inspect.signature(type(module).__call__)} takes no images"
    if len(required) > 1:
        return (f"its __call__{inspect.signature(type(module).__call__)} needs {required[1:]} besides the images; "
                "nas_jax calls NNX models as model(images) and switches them with model.train() / model.eval() "
                "(give the other arguments defaults, or keep the mode in attributes as nnx.Dropout and "
                "nnx.BatchNorm do)")
    return ""


class NNXModel(nn.Module):
    """The NNX model ``function`` (a ``load_function`` target) as a linen model; see the
    module doc. ``shapes``: the variables' shapes of a pruned network (``resize``)."""
    function: Callable[..., Any]
    num_classes: int
    model_kwargs: Tuple[Tuple[str, Any], ...] = ()
    shapes: Shapes = ()
    name_: str = ""

    def _scope_at(self, scopes: dict, path: Tuple[str, ...]):
        if path not in scopes:
            scopes[path] = self.scope if not path else self._scope_at(scopes, path[:-1]).push(path[-1], reuse=True)
        return scopes[path]

    def __call__(self, images, train: bool = False):
        initializing = self.is_initializing()
        params_key = self.make_rng("params") if initializing else jax.random.key(0)
        dropout_key = self.make_rng("dropout") if self.has_rng("dropout") else None
        module = build(self.function, self.num_classes, dict(self.model_kwargs),
                       nnx.Rngs(params=params_key, dropout=jax.random.key(1) if dropout_key is None else dropout_key,
                                default=params_key), self.shapes, self.name_)
        problem = call_problem(module)
        if problem:
            raise NNXContractError(f"model {self.name_}: {problem}")
        modules, variables = graph_items(module)
        scopes: Dict[Tuple[str, ...], Any] = {}
        given = {}
        for path, variable in variables:
            collection = collection_of(variable)
            if collection is None:
                continue
            scope = self._scope_at(scopes, path[:-1])
            if initializing:
                scope.put_variable(collection, path[-1], variable.get_value())
            given[path] = scope.get_variable(collection, path[-1])
            variable.set_value(given[path])
        if train:
            module.train()
            if dropout_key is None and has_dropout(module):
                raise NNXContractError(f"model {self.name_} has dropout and runs in train mode without a 'dropout' "
                                       "RNG; pass rngs={'dropout': key} to apply (nas_jax's training steps do)")
        else:
            module.eval()
        with linen_twins(modules, lambda path: self._scope_at(scopes, path)):
            out = module(images)
        for path, variable in variables:  # statistics an NNX module of the user's own updated
            if (path in given and collection_of(variable) == "batch_stats" and variable.get_value() is not given[path]
                    and self.is_mutable_collection("batch_stats")):
                self._scope_at(scopes, path[:-1]).put_variable("batch_stats", path[-1], variable.get_value())
        return out


def to_nnx(model: NNXModel, variables) -> nnx.Module:
    """The user's NNX module that ``model`` runs, at its ``shapes``, holding ``variables``
    (``{'params', 'batch_stats'}`` as ``model.init`` lays them out)."""
    module = build(model.function, model.num_classes, dict(model.model_kwargs), nnx.Rngs(0), model.shapes,
                   model.name_)
    flat = {tuple(path): value for collection in variables.values()
            for path, value in traverse_util.flatten_dict(collection).items()}
    for path, variable in graph_items(module)[1]:
        if collection_of(variable) is not None:
            variable.set_value(jnp.asarray(flat[path]))
    return module


def save_nnx(directory: str, module: nnx.Module) -> None:
    """Writes ``module``'s state (``nnx.Param``, ``nnx.BatchStat``) as an orbax checkpoint."""
    import orbax.checkpoint as ocp

    state = nnx.state(module, nnx.Any(nnx.Param, nnx.BatchStat))
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory, state.to_pure_dict(), force=True)


def load_nnx(directory: str, model: NNXModel) -> nnx.Module:
    """The module ``model`` describes (its function at its ``shapes``) with the state
    ``save_nnx`` wrote to ``directory``."""
    import orbax.checkpoint as ocp

    module = build(model.function, model.num_classes, dict(model.model_kwargs), nnx.Rngs(0), model.shapes,
                   model.name_)
    state = nnx.state(module, nnx.Any(nnx.Param, nnx.BatchStat))
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(directory, state.to_pure_dict())
    nnx.replace_by_pure_dict(state, restored)
    nnx.update(module, state)
    return module
