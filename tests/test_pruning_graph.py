"""Layer graphs, coupling, FLOPs / parameter counts and bad input (shapes only: no
compiled forward pass, so these are fast)."""
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import Phase, given, settings, strategies as st

from nas_jax.models.network import ZooSpec
from nas_jax.pruning.cost import network_cost
from nas_jax.pruning.export import width_overrides
from nas_jax.pruning.graph import IMAGE, build_layer_graph, zoo_graph
from nas_jax.pruning.widths import (WidthGrid, group_channels, load_widths, sample_ratios, save_widths,
                                    uniform_ratios)

SIZE = 32
GRID = WidthGrid.arange(0.1, 1.0, 0.1)
SPECS = {name: ZooSpec(name, 10, width, SIZE) for name, width in
         [("resnet18", 0.25), ("resnet50", 0.125), ("mobilenet_v1", 0.25), ("mobilenet_v2", 0.25),
          ("repvgg_a0", 0.25)]}
GRAPHS = {(name, block): zoo_graph(spec, block) for name, spec in SPECS.items() for block in ("plain", "deploy")}
SETTINGS = settings(max_examples=8, deadline=None, phases=(Phase.explicit, Phase.generate))


def _group_of(graph, path):
    return next(layer.group for layer in graph.layers if layer.path == path)


@pytest.mark.parametrize("name,block", sorted(GRAPHS))
def test_graph_covers_every_conv_and_the_classifier(name, block):
    graph = GRAPHS[name, block]
    variables = jax.eval_shape(lambda: SPECS[name].model(block).init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3))))
    kernels = {"/".join(k[:-2] if k[-2] == "conv" else k[:-1]) for k in _flat(variables["params"]) if k[-1] == "kernel"}
    assert {layer.path for layer in graph.layers} == kernels
    assert graph.layers[-1].kind == "dense" and graph.groups[graph.layers[-1].group].fixed
    assert graph.layers[0].producers == (IMAGE,)
    for src, dst in graph.edges:
        assert src < dst  # execution order
    assert GRAPHS[name, "plain"].groups == GRAPHS[name, "deploy"].groups


@pytest.mark.parametrize("name", sorted(SPECS))
def test_consumers_see_one_width(name):
    """Every layer's producers (what was added into its input) share one group, and a
    depthwise conv shares its input's group."""
    graph = GRAPHS[name, "plain"]
    for layer in graph.layers:
        groups = {graph.layers[p].group for p in layer.producers if p != IMAGE}
        assert len(groups) <= 1, layer.path
        if layer.kind == "depthwise":
            assert groups == {layer.group}, layer.path


def test_known_couplings():
    r18, r50, mb2 = GRAPHS["resnet18", "plain"], GRAPHS["resnet50", "plain"], GRAPHS["mobilenet_v2", "plain"]
    assert _group_of(r18, "stage0/conv1") == _group_of(r18, "stage1_0/conv2") == _group_of(r18, "stage1_1/conv2")
    assert _group_of(r18, "stage2_0/shortcut") == _group_of(r18, "stage2_0/conv2") == _group_of(r18, "stage2_1/conv2")
    assert _group_of(r18, "stage1_0/conv1") != _group_of(r18, "stage1_1/conv1")
    assert _group_of(r50, "stage1_0/shortcut") == _group_of(r50, "stage1_2/conv3")
    assert _group_of(r50, "stage1_0/conv3") != _group_of(r50, "stage0/conv1")
    assert _group_of(mb2, "features_2/expand") == _group_of(mb2, "features_2/depthwise")
    assert _group_of(mb2, "features_2/project") == _group_of(mb2, "features_3/project")
    assert len(GRAPHS["repvgg_a0", "plain"].prunable_groups) == len(GRAPHS["repvgg_a0", "plain"].layers) - 1


def _exported_shapes(spec, graph, channels):
    model = spec.model("plain", width_overrides(graph, channels))
    x = jnp.zeros((1, SIZE, SIZE, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    _, inter = jax.eval_shape(lambda v: model.apply(v, x, capture_intermediates=True,
                                                    mutable=["intermediates"]), variables)
    return variables, inter["intermediates"]


def _flat(tree):
    """``{path tuple: leaf}``; a sequence index is kept as an int."""
    return {tuple(getattr(k, "key", getattr(k, "idx", None)) for k in path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _independent_cost(variables, intermediates):
    """MACs from each conv / dense kernel's shape and its module's output size; params by
    counting the exported variables."""
    flat_params, flat_inter = _flat(variables["params"]), _flat(intermediates)
    flops = 0
    for key, kernel in flat_params.items():
        if key[-1] != "kernel":
            continue
        out = flat_inter[key[:-1] + ("__call__", 0)].shape
        positions = out[1] * out[2] if len(out) == 4 else 1
        flops += positions * int(np.prod(kernel.shape))
    return {"flops": flops, "params": sum(int(np.prod(v.shape)) for v in flat_params.values())}


@SETTINGS
@given(st.sampled_from(sorted(SPECS)), st.integers(0, 2**31 - 1))
def test_exported_network_builds_and_costs_match(name, seed):
    """A random configuration's exported network has consistent shapes (coupled widths
    agree), the cropped shapes, and the graph's FLOPs and parameters."""
    spec, graph = SPECS[name], GRAPHS[name, "plain"]
    channels = np.asarray(group_channels(graph, sample_ratios(jax.random.key(seed), graph, GRID)))
    variables, intermediates = _exported_shapes(spec, graph, channels)
    for layer in graph.layers:
        node = variables["params"]
        for part in layer.path.split("/"):
            node = node[part]
        kernel = node["conv"]["kernel"] if "conv" in node else node["kernel"]
        assert kernel.shape[-1] == channels[layer.group]
    assert network_cost(graph, channels) == _independent_cost(variables, intermediates)


def test_full_width_cost_matches_the_unpruned_model():
    spec, graph = SPECS["mobilenet_v2"], GRAPHS["mobilenet_v2", "plain"]
    model = spec.model()
    x = jnp.zeros((1, SIZE, SIZE, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    _, inter = jax.eval_shape(lambda v: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]),
                              variables)
    full = np.asarray(group_channels(graph, uniform_ratios(graph, 1.0)))
    assert network_cost(graph, full) == _independent_cost(variables, inter["intermediates"])


@SETTINGS
@given(st.integers(0, 2**31 - 1))
def test_sampled_ratios_are_on_the_grid(seed):
    graph = GRAPHS["resnet18", "plain"]
    ratios = np.asarray(sample_ratios(jax.random.key(seed), graph, GRID))
    for g, group in enumerate(graph.groups):
        nearest = np.min(np.abs(np.asarray(GRID.ratios) - ratios[g]))
        assert ratios[g] == 1.0 if group.fixed else nearest < 1e-6, (g, ratios[g])


def test_widths_file_round_trip(tmp_path):
    graph = GRAPHS["resnet18", "plain"]
    ratios = np.asarray(sample_ratios(jax.random.key(3), graph, GRID))
    save_widths(tmp_path / "w.json", graph, ratios)
    np.testing.assert_allclose(load_widths(tmp_path / "w.json", graph, GRID), ratios)


def test_bad_widths_are_refused(tmp_path):
    graph = GRAPHS["resnet18", "plain"]
    path = tmp_path / "w.json"
    save_widths(path, graph, uniform_ratios(graph, 0.3))
    doc = json.loads(path.read_text())
    with pytest.raises(ValueError, match="not on the grid"):
        load_widths(path, graph, WidthGrid.arange(0.25, 1.0, 0.25))
    with pytest.raises(ValueError, match="for model 'resnet18', not 'mobilenet_v2'"):
        load_widths(path, GRAPHS["mobilenet_v2", "plain"], GRID)
    path.write_text(json.dumps({**doc, "groups": {**doc["groups"], "stage9/conv1": 0.5}}))
    with pytest.raises(ValueError, match="unknown groups \\['stage9/conv1'\\]"):
        load_widths(path, graph, GRID)
    other = zoo_graph(ZooSpec("resnet18", 10, 0.5, SIZE))
    save_widths(path, other, uniform_ratios(other, 0.5))
    with pytest.raises(ValueError, match="other full widths"):
        load_widths(path, graph, GRID)
    with pytest.raises(ValueError, match="ascending ratios"):
        WidthGrid((0.5, 0.2))


def test_unknown_models_are_refused():
    with pytest.raises(ValueError, match="unknown model 'vgg16'"):
        zoo_graph(ZooSpec("vgg16", 10, 1.0, SIZE))

    class NoLayers(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return x.mean((1, 2))

    with pytest.raises(NotImplementedError, match="no conv or dense layers"):
        build_layer_graph(NoLayers(), (1, SIZE, SIZE, 3))


class ReversedChannels(nn.Module):
    """A conv whose input is the previous conv's output with its channels reversed."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(8, (3, 3), name="first")(x))
        return nn.Dense(2, name="head")(nn.Conv(8, (3, 3), name="second")(x[..., ::-1]).mean((1, 2)))


def test_an_op_the_graph_cannot_follow_names_the_op_and_the_layer_or_is_kept_full():
    with pytest.raises(NotImplementedError, match=r"layer second: .*`reversal of the channel axis`.*keep_full"):
        build_layer_graph(ReversedChannels(), (1, SIZE, SIZE, 3))
    graph = build_layer_graph(ReversedChannels(), (1, SIZE, SIZE, 3), keep_full=["second"])
    assert graph.prunable_groups == ()  # "first" feeds the reversal, "second" is kept, "head" is the output
    assert graph.layers[1].inputs == ((IMAGE, 8),)
    with pytest.raises(ValueError, match="keep_full names \\['nope'\\]"):
        build_layer_graph(ReversedChannels(), (1, SIZE, SIZE, 3), keep_full=["nope"])


class ReducedPrecisionResidual(nn.Module):
    """A residual block whose sum is rounded to bfloat16's precision (``reduce_precision``:
    elementwise, though its name starts like a reduction's) and max-pooled over space."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(8, (3, 3), name="first")(x))
        y = jax.lax.reduce_precision(x + nn.Conv(8, (3, 3), name="second")(x), exponent_bits=8, mantissa_bits=7)
        return nn.Dense(2, name="head")(y.max(axis=(1, 2)))


def test_channelwise_primitives_follow_their_rules():
    graph = build_layer_graph(ReducedPrecisionResidual(), (1, SIZE, SIZE, 3))
    first, second, head = graph.layers
    assert first.group == second.group  # the residual sum couples them through reduce_precision
    assert head.inputs == ((first.group, 8),)  # reduce_max over space keeps the channels
    assert graph.prunable_groups == (first.group,)
