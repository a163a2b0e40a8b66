"""Flax NNX models and Vision Transformers through the layer graph, the masked forward,
export and the commands: NNX models written here (``nnx_models.py``: a residual CNN with
BatchNorm, a concatenating net with a depthwise conv and a GroupNorm) and the linen and
NNX ViTs of ``experiments/models/vit.py`` at small sizes.

The NNX ViT's default attention (``jax.nn.dot_product_attention``) computes its softmax in
float32 whatever its inputs' dtype, so the float64 checks give it an attention written
out in the inputs' dtype (``exact_attention``); ``test_the_default_nnx_attention_prunes``
checks the default one at float32 precision.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nas_jax.cli import main
from nas_jax.models.contract import ModelContractError
from nas_jax.models.custom import CustomSpec
from nas_jax.models.network import load_network, load_nnx_network, save_network
from nas_jax.models.nnx_model import NNXModel, to_nnx
from nas_jax.pruning.cost import network_cost
from nas_jax.pruning.export import export_network
from nas_jax.pruning.graph import build_layer_graph
from nas_jax.pruning.task import PruningTask, configuration_variables
from nas_jax.pruning.widths import WidthGrid, sample_ratios, save_widths, load_widths, uniform_ratios
from helpers import as_float64, assert_channel_flow, exported_and_masked_in_float64, jaxpr_macs, random_variables, rel_l2

SIZE = 16
GRID = WidthGrid.arange(0.25, 1.0, 0.25)
VIT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "models", "vit.py")
SMALL_VIT = (("depth", 1), ("heads", 2), ("mlp", 24), ("width", 16))
SEARCH = ["--config", "experiments/configs/prune_search_digits.py", "--config.search.evaluations=4"]


def exact_attention(query, key, value, **unused):
    """Scaled dot-product attention in the inputs' dtype ([B, L, H, D] each)."""
    weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", query / jnp.sqrt(query.shape[-1]), key), axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, value)


SPECS = {
    "residual_cnn": CustomSpec("nnx_models:residual_cnn", 10, SIZE),
    "concat_net": CustomSpec("nnx_models:concat_net", 10, SIZE),
    "vit": CustomSpec(f"{VIT}:vit", 10, SIZE, SMALL_VIT),
    "nnx_vit": CustomSpec(f"{VIT}:nnx_vit", 10, SIZE, tuple(sorted(SMALL_VIT + (("image_size", SIZE),
                                                                             ("attention_fn", exact_attention))))),
}
DEFAULT_NNX_VIT = CustomSpec(f"{VIT}:nnx_vit", 10, SIZE, tuple(sorted(SMALL_VIT + (("image_size", SIZE),))))
TASKS = {name: PruningTask(spec, GRID, gcn_features=8, gcn_depth=2, generator_hidden=4)
         for name, spec in {**SPECS, "default_nnx_vit": DEFAULT_NNX_VIT}.items()}
NNX = ("residual_cnn", "concat_net", "nnx_vit")


@pytest.mark.parametrize("name", NNX)
def test_linen_twins_compute_what_the_nnx_classes_compute(name):
    """The NNX model run by nas_jax against the same module run by NNX, in float64: eval
    logits, train logits and the BatchNorm statistics a train step writes."""
    model = TASKS[name].model
    assert isinstance(model, NNXModel)
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (4, SIZE, SIZE, 3), jnp.float64)
        variables = as_float64(random_variables(model, x, seed=1))
        module = to_nnx(model, variables)
        module.eval()
        assert rel_l2(model.apply(variables, x, train=False), module(x)) < 1e-13
        logits, updated = model.apply(variables, x, train=True, mutable=["batch_stats"])
        module.train()
        assert rel_l2(logits, module(x)) < 1e-13
        ours = jax.tree.leaves(updated)
        theirs = jax.tree.leaves(nnx.state(module, nnx.BatchStat).to_pure_dict())
        assert len(ours) == len(theirs) and all(rel_l2(a, b) < 1e-13 for a, b in zip(ours, theirs))


def test_graph_structures():
    """Residual and concatenation couplings, the ViT's head groups, attentions and the
    position embedding and class token that carry the embedding's channels."""
    cnn, cat, vit, nvit = (TASKS[n].graph for n in ("residual_cnn", "concat_net", "vit", "nnx_vit"))
    by_path = {layer.path: layer for layer in cnn.layers}
    assert by_path["stem"].group == by_path["conv2"].group != by_path["conv1"].group
    by_path = {layer.path: layer for layer in cat.layers}
    assert [cat.groups[g].name for g, _ in by_path["mix"].inputs] == ["left", "right"]
    assert cat.groups[by_path["depthwise"].group].name == "mix" and cat.groups[by_path["mix"].group].blocks == 2
    assert by_path["head"].repeat == 16
    for graph, prefix in ((vit, "block0/"), (nvit, "blocks/0/")):
        by_path = {layer.path: layer for layer in graph.layers}
        attention, = graph.attentions
        heads = graph.groups[by_path[prefix + "attention/query"].group]
        assert {graph.layers[i].path for i in heads.layers} == {prefix + f"attention/{r}" for r in ("query", "key", "value")}
        assert (heads.unit, heads.channels, attention.heads, attention.queries) == (8, 16, 2, (SIZE // 4) ** 2 + 1)
        embed = by_path["embed"].group
        assert {graph.layers[i].path for i in graph.groups[embed].layers} == {"embed", prefix + "attention/out",
                                                                            prefix + "fc2"}
        assert {(p.path, p.group) for p in graph.free_params} == {("cls", embed), ("position", embed)}


@pytest.mark.parametrize("name", ["concat_net", "vit", "nnx_vit"])
def test_channel_flow_matches_brute_force(name):
    """As in test_custom_models.py; a whole head changes for an attention's query or key (the
    scores of that head change). The head reads the class token only, which the patches
    (the embedding's output) reach through the attention alone, held fixed here."""
    graph = TASKS[name].graph
    scores = {s for s, _ in enumerate(graph.layers) if any(s in (a.query, a.key) for a in graph.attentions)}
    assert_channel_flow(TASKS[name].model, graph, SIZE, lambda width: sorted({0, width - 1}),
                        unit=lambda s: graph.groups[graph.layers[s].group].unit if s in scores else 1,
                        unreached=lambda source, layer: (source, layer) == ("embed", "head"))


@pytest.mark.parametrize("name", list(SPECS))
def test_exported_equals_masked_and_costs_what_its_jaxpr_computes(name):
    task = TASKS[name]
    params = jax.jit(task.init)(jax.random.key(0), None)["params"]
    images = jax.random.normal(jax.random.key(5), (3, 8, SIZE, SIZE, 3))
    pruned_somewhere = False
    for seed in range(3):
        ratios = sample_ratios(jax.random.key(seed), task.graph, GRID)
        model, pruned, channels, exported, reference = exported_and_masked_in_float64(task, params, ratios, images)
        assert rel_l2(exported, reference) < 1e-10, seed
        cost = network_cost(task.graph, channels)
        jaxpr = jax.make_jaxpr(lambda x: model.apply(pruned, x, train=False))(jnp.zeros((1, SIZE, SIZE, 3)))
        assert cost["flops"] == jaxpr_macs(jaxpr.jaxpr), seed  # attention's two products included
        assert cost["params"] == sum(int(np.size(a)) for a in jax.tree.leaves(pruned["params"])), seed
        small = build_layer_graph(model, (1, SIZE, SIZE, 3))
        assert [layer.out_channels for layer in small.layers] == [int(channels[layer.group]) for layer in task.graph.layers]
        pruned_somewhere |= bool(np.any(np.asarray(channels) < [g.channels for g in task.graph.groups]))
    assert pruned_somewhere


@pytest.mark.parametrize("name", ["residual_cnn", "default_nnx_vit"])
def test_exported_nnx_network_is_the_users_class_smaller_and_reloads_from_orbax(name, tmp_path):
    task = TASKS[name]
    params = jax.jit(task.init)(jax.random.key(0), None)["params"]
    images = jax.random.normal(jax.random.key(5), (2, 4, SIZE, SIZE, 3))
    ratios = uniform_ratios(task.graph, 0.5)
    variables, channels = configuration_variables(task, params, ratios, images)
    model, pruned = export_network(task.spec, task.graph, variables, channels)
    save_network(str(tmp_path), task.spec, model, pruned)
    _, loaded_model, loaded = load_network(str(tmp_path))
    expected = model.apply(pruned, images[0])
    np.testing.assert_array_equal(loaded_model.apply(loaded, images[0]), expected)
    module = load_nnx_network(str(tmp_path))
    module.eval()
    np.testing.assert_allclose(module(images[0]), expected, rtol=1e-5, atol=1e-6)
    assert type(module).__name__ == {"residual_cnn": "ResidualCNN", "default_nnx_vit": "NNXViT"}[name]
    if name == "residual_cnn":
        assert (module.conv1.in_features, module.conv1.out_features) == (4, 3)
        assert module.conv1.kernel[...].shape == (3, 3, 4, 3) and module.bn1.num_features == 3
    else:
        attention = module.blocks[0].attention
        assert (attention.num_heads, attention.head_dim, attention.in_features) == (1, 8, 8)
        assert attention.query.kernel[...].shape == (8, 1, 8) and module.position[...].shape == (1, 17, 8)


def test_the_default_nnx_attention_prunes():
    """The NNX ViT with nnx.MultiHeadAttention's own attention function: exported ==
    masked at float32 precision (its softmax is float32)."""
    task = TASKS["default_nnx_vit"]
    params = jax.jit(task.init)(jax.random.key(0), None)["params"]
    images = jax.random.normal(jax.random.key(5), (3, 8, SIZE, SIZE, 3))
    _, _, _, exported, reference = exported_and_masked_in_float64(task, params, uniform_ratios(task.graph, 0.5),
                                                                  images)
    assert rel_l2(exported, reference) < 1e-6


def test_bad_nnx_models_and_head_widths_get_clear_errors(tmp_path):
    with pytest.raises(ModelContractError, match=r"needs \['train'\] besides the images.*model.train\(\)"):
        CustomSpec("nnx_models:needs_train", 10, SIZE).model()
    with pytest.raises(NotImplementedError, match="layer head: its input passes through `dot_general`"):
        PruningTask(CustomSpec("nnx_models:einsum_attention", 10, SIZE), GRID)
    graph = TASKS["vit"].graph
    path = tmp_path / "w.json"
    save_widths(path, graph, uniform_ratios(graph, 0.75))  # 1.5 of 2 heads
    with pytest.raises(ValueError, match="block0/attention/query is 2 attention heads of 8 channels: width 0.75 "
                                         "keeps 1.5 heads"):
        load_widths(path, graph, GRID)


def test_prune_train_search_export_train_and_fuse_commands_on_an_nnx_vit(tmp_path, capsys):
    workdir, out = tmp_path / "run", tmp_path / "export"
    overrides = ["--config.model_kwargs.depth=1", "--config.model_kwargs.heads=2", "--config.model_kwargs.mlp=24",
                 "--config.model_kwargs.width=16", "--config.pruning.keep_full=[]",
                 "--config.num_steps=2", "--config.log_every=1", "--config.pruning.calibration_batches=1",
                 "--config.pruning.gcn_features=8", "--config.pruning.generator_hidden=4",
                 "--config.pruning.report_widths=(0.5, 1.0)", "--config.batch_size=16", "--config.width=1.0"]
    assert main(["prune", "train", "--config", "experiments/configs/prune_nnx_vit_digits.py", "--workdir",
                 str(workdir), *overrides]) == 0
    assert main(["train", "--config", "experiments/configs/prune_nnx_vit_digits.py", "--workdir",  # from scratch
                 str(tmp_path / "scratch"), *overrides[:5], "--config.num_steps=1", "--config.batch_size=16"]) == 0
    assert main(["prune", "search", "--workdir", str(workdir), "--method", "random", "--budget", "flops=0.5",
                 *SEARCH]) == 0
    best = workdir / "search" / "random" / "best.json"
    assert main(["prune", "export", "--workdir", str(workdir), "--widths", str(best), "--out", str(out)]) == 0
    exported = json.loads((out / "report.json").read_text())
    assert exported["max_abs_diff_vs_masked"] < 1e-4 and exported["flops_ratio"] <= 0.5
    assert (out / "nnx_state").is_dir()
    assert main(["train", "--config", "experiments/configs/train_digits.py", "--workdir", str(tmp_path / "ft"),
                 f"--config.init_from={out}", "--config.num_steps=2", "--config.batch_size=16"]) == 0
    capsys.readouterr()
    assert main(["fuse", "--workdir", str(tmp_path / "ft")]) == 2  # a ViT has no conv-BN pair
    assert "nothing to fuse" in capsys.readouterr().err


def test_fuse_params_folds_an_nnx_models_batch_norms():
    from nas_jax.rep.fuse import fuse_params

    model = TASKS["residual_cnn"].model
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (4, SIZE, SIZE, 3), jnp.float64)
        variables = as_float64(random_variables(model, x, seed=2))
        deploy_model, deploy_variables = fuse_params(model, variables, input_shape=(1, SIZE, SIZE, 3))
        assert rel_l2(deploy_model.apply(deploy_variables, x), model.apply(variables, x, train=False)) < 1e-12
    assert "batch_stats" not in deploy_variables or not jax.tree.leaves(deploy_variables["batch_stats"])


def test_dropout_draws_from_the_steps_rng_and_is_refused_without_one():
    spec = CustomSpec("nnx_models:dropout_net", 10, SIZE)
    model = spec.model()
    x = jax.random.normal(jax.random.key(0), (2, SIZE, SIZE, 3))
    variables = model.init(jax.random.key(0), x, train=False)
    apply = lambda key: model.apply(variables, x, train=True, mutable=["batch_stats"],  # noqa: E731
                                    rngs={"dropout": jax.random.key(key)})[0]
    assert not np.allclose(apply(1), apply(2)) and np.array_equal(apply(1), apply(1))
    np.testing.assert_array_equal(model.apply(variables, x), model.apply(variables, x))  # eval: no dropout
    with pytest.raises(Exception, match="has dropout and runs in train mode without a 'dropout' RNG"):
        model.apply(variables, x, train=True, mutable=["batch_stats"])


def test_layer_options_without_a_linen_twin_are_refused():
    with pytest.raises(ModelContractError, match="Linear with a non-default dot_general has no linen twin"):
        CustomSpec("nnx_models:custom_dot_linear", 10, SIZE).model()


def test_a_scalar_parameter_outside_layers_is_kept_and_counted():
    task = PruningTask(CustomSpec("user_models:scaled_head", 10, SIZE), GRID, gcn_features=8, generator_hidden=4)
    assert [(p.path, p.group, p.size) for p in task.graph.free_params] == [("temperature", -1, 1)]
    params = jax.jit(task.init)(jax.random.key(0), None)["params"]
    images = jax.random.normal(jax.random.key(5), (3, 8, SIZE, SIZE, 3))
    _, pruned, channels, exported, reference = exported_and_masked_in_float64(
        task, params, uniform_ratios(task.graph, 0.5), images)
    assert rel_l2(exported, reference) < 1e-10 and pruned["params"]["temperature"].shape == ()
    assert network_cost(task.graph, channels)["params"] == sum(int(np.size(a)) for a in jax.tree.leaves(pruned["params"]))
