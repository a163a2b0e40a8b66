"""What nas_jax needs of a model, checked when a user's model is first built.

Every model is called as ``model.init(rng, images, train=False)`` and
``model.apply(variables, images, train=bool)`` on NHWC float32 images [B, H, W, C], with
``mutable=['batch_stats']`` when ``train=True``. It returns logits [B, num_classes] (one
array) and keeps its state in ``params`` and ``batch_stats`` only; in eval mode it changes
nothing. ``check_model`` runs these calls abstractly (``jax.eval_shape``: traced, not
computed) and turns a misfit into a ``ValueError`` that says what was expected and how to
adapt the model, instead of a traceback from inside Flax.
"""
from __future__ import annotations

import inspect
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

COLLECTIONS = ("params", "batch_stats")

ADAPTER = """wrap it in a module of your own and name that in --config.model, e.g.

    class Adapted(nn.Module):
        net: nn.Module

        @nn.compact
        def __call__(self, x, train: bool = False):
            return {call}

    def my_model(num_classes):
        return Adapted(TheirModel(num_classes))"""


class ModelContractError(ValueError):
    """A model that does not fit the contract of this module's doc."""


def _signature_problem(module: nn.Module) -> str:
    """Why ``module(images, train=...)`` cannot be called, or ''."""
    try:
        parameters = inspect.signature(module.__call__).parameters
    except (TypeError, ValueError):  # a builtin or C callable: let the trace decide
        return ""
    train = parameters.get("train")
    if train is None and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return (f"its __call__{inspect.signature(module.__call__)} has no `train` keyword; "
                + ADAPTER.format(call="self.net(x)  # or self.net(x, deterministic=not train), ..."))
    if train is not None and train.kind is inspect.Parameter.POSITIONAL_ONLY:
        return (f"its `train` is positional-only (__call__{inspect.signature(module.__call__)}); nas_jax passes it "
                "by keyword: " + ADAPTER.format(call="self.net(x, train)"))
    return ""


def _output_problem(out, batch: int, num_classes: int, mode: str) -> str:
    """Why ``out`` (abstract) is not logits [batch, num_classes], or ''."""
    if not isinstance(out, jax.ShapeDtypeStruct):
        kind = type(out).__name__
        return (f"in {mode} mode it returns a {kind} ({jax.tree.map(lambda a: tuple(a.shape), out)}), not one "
                f"array of logits [B, num_classes]; " + ADAPTER.format(call="self.net(x, train=train)[0]  # or ['logits']"))
    if tuple(out.shape) != (batch, num_classes):
        return (f"in {mode} mode it returns shape {tuple(out.shape)} for {batch} images, not logits "
                f"[{batch}, {num_classes}] (num_classes={num_classes}: does the function pass num_classes to "
                "the classifier?)")
    return ""


def _trace(name: str, what: str, fn, *args):
    """``jax.eval_shape(fn, *args)``, a failure named as ``what`` failing on model ``name``."""
    try:
        return jax.eval_shape(fn, *args)
    except Exception as err:  # noqa: BLE001 -- any failure inside the user's code is reported as a misfit
        text = f"{type(err).__name__}: {err}"
        if "unbound axis name" in text:
            raise ModelContractError(
                f"model {name}: {what} fails because a layer reduces over a named axis ({text.splitlines()[0]}). "
                "A BatchNorm with axis_name='batch' needs a pmap/shard_map axis; nas_jax runs models under jit "
                "over a Mesh, where the batch is one global array and BatchNorm's mean is already over all "
                "devices: build the BatchNorm without axis_name") from err
        if "is immutable" in text:
            raise ModelContractError(
                f"model {name}: {what} tries to update its batch_stats ({text.splitlines()[0]}): in eval mode a "
                "model must not change its statistics. Does it pass train on to every BatchNorm, as "
                "nn.BatchNorm(use_running_average=not train)?") from err
        raise ModelContractError(f"model {name}: {what} fails: {text.splitlines()[0]} (call it yourself "
                                 "for the whole traceback)") from err


def check_model(module: nn.Module, input_shape: Sequence[int], num_classes: int, name: str = "") -> None:
    """Raises ``ModelContractError`` if ``module`` does not fit the contract of this
    module's doc on NHWC inputs of ``input_shape`` (nothing is computed)."""
    name = name or type(module).__name__
    problem = _signature_problem(module)
    if problem:
        raise ModelContractError(f"model {name}: nas_jax calls models as model(images, train=...), but {problem}")
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    variables = _trace(name, "model.init(rng, images, train=False)",
                       lambda x: module.init(jax.random.key(0), x, train=False), x)
    extra = sorted(set(variables) - set(COLLECTIONS))
    if extra:
        raise ModelContractError(
            f"model {name}: it keeps variables in collection(s) {extra}; nas_jax trains, prunes and saves "
            f"{list(COLLECTIONS)} only. BatchNorm statistics belong in 'batch_stats' (flax.linen.BatchNorm "
            "keeps them there); a module of your own should declare them with self.variable('batch_stats', ...)")
    batch = input_shape[0]
    out = _trace(name, "model.apply(variables, images, train=False)",
                 lambda v, x: module.apply(v, x, train=False), variables, x)
    problem = _output_problem(out, batch, num_classes, "eval")
    if problem:
        raise ModelContractError(f"model {name}: {problem}")
    out, _ = _trace(name, "model.apply(variables, images, train=True, mutable=['batch_stats'])",
                    lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"],
                                              rngs={"dropout": jax.random.key(0)}), variables, x)
    problem = _output_problem(out, batch, num_classes, "train")
    if problem:
        raise ModelContractError(f"model {name}: {problem}")
