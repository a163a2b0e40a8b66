"""Shared test helpers: random variables with non-trivial BatchNorm statistics, relative
errors, float64 copies, the exported-vs-masked comparison of a pruned network, a run's
logged train losses."""
import functools

import flax.linen as nn

import jax
import jax.numpy as jnp
import numpy as np

from nas_jax.train.metrics import read_metrics


def randomize(variables, seed=0, scale=0.3):
    """Every leaf replaced by random values; BN variances positive, BN scales near 1."""
    rng = np.random.default_rng(seed)

    def leaf(path, x):
        name = getattr(path[-1], "key", str(path[-1]))
        if name == "var":
            v = rng.uniform(0.5, 2.0, x.shape)
        elif name == "scale":
            v = rng.uniform(0.5, 1.5, x.shape)
        else:
            v = rng.normal(0.0, scale, x.shape)
        return jnp.asarray(v, x.dtype)

    return jax.tree_util.tree_map_with_path(leaf, variables)


def rel_l2(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def random_variables(model, x, seed=0, scale=0.3):
    """Random variables for ``model`` on input ``x`` without running its initialisers
    (compiling a big model's random init costs far more than the test itself)."""
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    return randomize(shapes, seed, scale)


def as_float64(tree):
    """Every array leaf of ``tree`` as float64 (call under ``jax.enable_x64(True)``)."""
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


@functools.partial(jax.jit, static_argnums=0)
def masked_eval(task, variables, channels, images):
    """Eval-mode logits of ``task``'s masked network (``nas_jax.pruning.masked``)."""
    from nas_jax.pruning import masked
    return masked.masked_apply(task.model, task.graph, variables, channels, images, False)


def exported_and_masked_in_float64(task, params, ratios, images, computes_in=jnp.float64):
    """(exported model, its variables, channels, exported logits, masked logits) for
    ``ratios``, everything in float64: the PruningNet's parameters, the generated weights,
    the BatchNorm statistics recalibrated on ``images[:2]``, the input ``images[2]`` and the
    logits. Float32 rounding (jit fusion order, statistics of two batches of 8) moves the
    two forms apart by up to ~3e-5 relative on some configurations; in float64 they agree
    to ~1e-14. ``computes_in``: the logits' dtype, float32 for a model that casts to it in
    its own code."""
    from nas_jax.pruning.export import export_network
    from nas_jax.pruning.task import configuration_variables
    with jax.enable_x64(True):
        images = as_float64(images)
        variables, channels = configuration_variables(task, as_float64(params), ratios, images[:2])
        reference = masked_eval(task, variables, channels, images[2])
        model, pruned = export_network(task.spec, task.graph, variables, channels)
        exported = jax.jit(lambda v, x: model.apply(v, x, train=False))(pruned, images[2])
    assert exported.dtype == reference.dtype == computes_in
    return model, pruned, channels, exported, reference


def jaxpr_macs(jaxpr) -> int:
    """Multiply-accumulates of every conv and matrix product in ``jaxpr`` (recursing into
    nested jaxprs), counted from their shapes alone."""
    total = 0
    for eqn in jaxpr.eqns:
        for p in eqn.params.values():
            inner = getattr(p, "jaxpr", p)
            if hasattr(inner, "eqns"):
                total += jaxpr_macs(inner)
        if eqn.primitive.name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            total += int(np.prod(eqn.outvars[0].aval.shape)) * rhs[0] * rhs[1] * rhs[2]  # HWIO: taps x inputs per group
        elif eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += int(np.prod(eqn.outvars[0].aval.shape)) * int(np.prod([lhs[a] for a in contract]))
    return total


def _identity_norms(next_fun, args, kwargs, context):
    if isinstance(context.module, (nn.LayerNorm, nn.GroupNorm)) and context.method_name == "__call__":
        return args[0]
    return next_fun(*args, **kwargs)


def _layer_io(model, variables, x, perturb=None):
    """({layer path: input}, {layer path: output}); with ``perturb = (path, channel,
    outputs)`` that layer's output channel is raised by 10 and every other non-depthwise layer
    returns ``outputs[path]`` whatever its input."""
    inputs, outputs = {}, {}

    def wrap(module, call, h):
        path = "/".join(module.path)
        inputs[path] = h
        if perturb is None or (isinstance(module, nn.Conv) and module.feature_group_count == h.shape[-1] > 1
                               and path != perturb[0]):
            y = call(h)
        elif path == perturb[0]:
            y = perturb[2][path]
            n_out = feature_axes(module)[1]  # a DenseGeneral's channels are its heads x head_dim
            y = y.reshape(*y.shape[:y.ndim - n_out], -1).at[..., perturb[1]].add(10.0).reshape(y.shape)
        else:
            y = perturb[2][path]
        outputs[path] = y
        return y

    from nas_jax.pruning.graph import intercept_layers
    from nas_jax.pruning.graph.trace import feature_axes
    with nn.intercept_methods(_identity_norms), intercept_layers(wrap):
        model.apply(variables, x, train=False)
    return inputs, outputs


def _reads(graph, layer):
    """[(group, channel)] of every entry of ``layer``'s input axis."""
    pattern = [(g, c) for g, width in layer.inputs for c in range(width)]
    return pattern * layer.repeat


def _entries(a, n):
    """``a`` as [rows, n]: its trailing axes, whose sizes multiply to ``n``, as one (the
    heads x head_dim input of an attention's output projection, say)."""
    k = next(k for k in range(a.ndim - 1, -1, -1) if np.prod(a.shape[k:]) >= n)
    assert np.prod(a.shape[k:]) == n, f"input {a.shape} has no trailing axes of {n} entries"
    return a.reshape(-1, n)


def assert_channel_flow(model, graph, size, channels, unit=lambda source: 1, unreached=lambda source, layer: False):
    """Checks ``graph``'s channel flow against brute force on random variables: each of
    ``channels(out_channels)`` of every layer's output is raised by 10 while every other
    layer returns its unperturbed output, and exactly the input entries of the later layers
    that the graph says read that channel must change. ``unit(source)``: how many channels
    move together (a head, where the source is an attention's query or key, whose scores
    mix the head); ``unreached(source, layer)``: pairs (paths) the perturbation cannot reach
    with everything else held, though the layer reads the channel."""
    x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
    variables = random_variables(model, x, seed=1)
    base_in, base_out = _layer_io(model, variables, x)
    checked = 0
    for s, source in enumerate(graph.layers):
        for channel in channels(source.out_channels):
            inputs, _ = _layer_io(model, variables, x, (source.path, channel, base_out))
            for i, layer in enumerate(graph.layers):
                entries = _reads(graph, layer)
                changed = np.any(_entries(np.asarray(inputs[layer.path] != base_in[layer.path]), len(entries)), axis=0)
                predicted = np.asarray([i > s and g == source.group and c // unit(s) == channel // unit(s)
                                        for g, c in entries]) & (not unreached(source.path, layer.path))
                np.testing.assert_array_equal(changed, predicted, err_msg=f"{source.path}[{channel}] -> {layer.path}")
                checked += int(predicted.sum())
    assert checked > 0


def train_losses(workdir):
    """``{step: loss}`` of the train rows a run logged in ``workdir``'s ``metrics.jsonl``."""
    return {r["step"]: r["loss"] for r in read_metrics(workdir) if r["split"] == "train"}
