"""Bring your own model: the layer graph, the PruningNet, export and the commands on the
four user models of ``tests/user_models.py`` (not zoo models).

The channel flow of each graph is checked against brute force: one channel of one layer's
output is raised by 10 (so no ReLU or max pool hides it) while every other layer returns
its unperturbed output (depthwise convs run, as they pass channels through one to one),
and the input entries of every later layer that change are compared with the entries the
graph says read that channel. LayerNorm and
GroupNorm run as the identity in that check, because they mix the channels of a norm
group by design (the graph records that as ``Group.blocks``, which the exported == masked
test checks)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nas_jax.cli import main
from nas_jax.models.custom import CustomSpec
from nas_jax.models.network import load_network, save_network
from nas_jax.pruning import masked
from nas_jax.pruning.cost import network_cost
from nas_jax.pruning.export import export_network
from nas_jax.pruning.graph import IMAGE, build_layer_graph
from nas_jax.pruning.task import PruningTask, configuration_variables
from nas_jax.pruning.widths import WidthGrid, sample_ratios, save_widths, uniform_ratios
from helpers import as_float64, assert_channel_flow, exported_and_masked_in_float64, jaxpr_macs, random_variables, rel_l2

SIZE = 16
MODELS = ("tiny_unet", "dense_block_net", "flatten_mlp", "grouped_gn")
GRID = WidthGrid.arange(0.25, 1.0, 0.25)
SPECS = {name: CustomSpec(f"user_models:{name}", 10, SIZE) for name in MODELS}
TASKS = {name: PruningTask(spec, GRID, gcn_features=8, gcn_depth=2, generator_hidden=4) for name, spec in SPECS.items()}


@pytest.mark.parametrize("name", MODELS)
def test_channel_flow_matches_brute_force(name):
    assert_channel_flow(TASKS[name].model, TASKS[name].graph, SIZE, lambda width: sorted({0, width // 2, width - 1}))


def test_user_model_structures():
    """What each graph is expected to hold, named by the model's own layers."""
    unet, dense, mlp, gn = (TASKS[n].graph for n in MODELS)
    by_path = {layer.path: layer for layer in unet.layers}
    assert [unet.groups[g].name for g, _ in by_path["dec"].inputs] == ["up", "enc1"]  # concatenated skip
    by_path = {layer.path: layer for layer in dense.layers}
    assert [dense.groups[g].name for g, _ in by_path["transition"].inputs] == ["stem", "grow0", "grow1", "grow2"]
    by_path = {layer.path: layer for layer in mlp.layers}
    assert by_path["fc1"].repeat == (SIZE // 2) ** 2 and by_path["fc1"].inputs == ((by_path["conv2"].group, 6),)
    by_path = {layer.path: layer for layer in gn.layers}
    coupled = gn.groups[by_path["grouped"].group]
    assert {gn.layers[i].path for i in coupled.layers} == {"grouped", "depthwise", "shortcut"}
    assert coupled.blocks == 4 and gn.groups[by_path["conv1"].group].blocks == 4
    for graph in (unet, dense, mlp, gn):
        assert [g.fixed for g in graph.groups].count(True) == 1  # only the classifier


@pytest.mark.parametrize("name", MODELS)
def test_exported_user_model_equals_masked_and_costs_what_the_graph_says(name):
    task = TASKS[name]
    params = jax.jit(task.init)(jax.random.key(0), None)["params"]
    images = jax.random.normal(jax.random.key(5), (3, 8, SIZE, SIZE, 3))
    for seed in range(3):
        ratios = sample_ratios(jax.random.key(seed), task.graph, GRID)
        model, pruned, channels, exported, reference = exported_and_masked_in_float64(task, params, ratios, images)
        assert rel_l2(exported, reference) < 1e-10, seed
        with jax.enable_x64(True):  # really pruned: the full-width network computes something else
            full_vars, full = configuration_variables(task, as_float64(params), uniform_ratios(task.graph, 1.0),
                                                      as_float64(images[:2]))
            full_logits = masked.masked_apply(task.model, task.graph, full_vars, full, as_float64(images[2]), False)
        if np.any(np.asarray(channels) != np.asarray(full)):
            assert rel_l2(full_logits, reference) > 1e-3
        cost = network_cost(task.graph, channels)
        jaxpr = jax.make_jaxpr(lambda x: model.apply(pruned, x, train=False))(jnp.zeros((1, SIZE, SIZE, 3)))
        assert cost["flops"] == jaxpr_macs(jaxpr.jaxpr), seed
        assert cost["params"] == sum(int(np.size(a)) for a in jax.tree.leaves(pruned["params"])), seed
        small = build_layer_graph(model, (1, SIZE, SIZE, 3))  # the exported model is that model, smaller
        assert [layer.out_channels for layer in small.layers] == [int(channels[layer.group]) for layer in task.graph.layers]


def test_exported_user_model_saves_loads_and_inits_at_its_widths(tmp_path):
    task = TASKS["grouped_gn"]
    params = jax.jit(task.init)(jax.random.key(0), None)["params"]
    images = jax.random.normal(jax.random.key(5), (2, 4, SIZE, SIZE, 3))
    variables, channels = configuration_variables(task, params, uniform_ratios(task.graph, 0.5), images)
    model, pruned = export_network(task.spec, task.graph, variables, channels)
    save_network(str(tmp_path), task.spec, model, pruned)
    spec, loaded_model, loaded = load_network(str(tmp_path))
    assert spec == task.spec and loaded_model == model
    np.testing.assert_array_equal(loaded_model.apply(loaded, images[0]), model.apply(pruned, images[0]))
    fresh = jax.eval_shape(lambda: loaded_model.init(jax.random.key(0), images[0]))
    assert jax.tree.map(np.shape, fresh) == jax.tree.map(np.shape, loaded)


def test_an_nnx_model_is_refused_with_what_is_traced():
    from flax import nnx

    class NNXNet(nnx.Module):
        def __init__(self, rngs):
            self.conv, self.head = nnx.Conv(3, 8, (3, 3), rngs=rngs), nnx.Linear(8, 10, rngs=rngs)

        def __call__(self, x, train=False):
            return self.head(self.conv(x).mean((1, 2)))

    with pytest.raises(NotImplementedError, match="name its function .with an `rngs` parameter. in config.model"):
        build_layer_graph(nnx.bridge.to_linen(NNXNet), (1, SIZE, SIZE, 3))


def test_unknown_functions_and_zoo_only_options_are_refused():
    with pytest.raises(ValueError, match="cannot import 'no_such_module'"):
        CustomSpec("no_such_module:f", 10, SIZE).model()
    with pytest.raises(ValueError, match="has no 'nope'"):
        CustomSpec("user_models:nope", 10, SIZE).model()
    with pytest.raises(ValueError, match="block='dbb' applies to zoo models only"):
        SPECS["tiny_unet"].model("dbb")


def test_prune_train_search_export_commands_on_a_user_model(tmp_path, capsys):
    workdir, out = tmp_path / "run", tmp_path / "export"
    overrides = ["--config.model=user_models:tiny_unet", "--config.image_size=16", "--config.num_steps=2",
                 "--config.log_every=1", "--config.pruning.calibration_batches=1", "--config.pruning.gcn_features=8",
                 "--config.pruning.generator_hidden=4", "--config.pruning.report_widths=(0.5, 1.0)",
                 "--config.batch_size=16", "--config.width=1.0"]
    assert main(["prune", "train", "--config", "experiments/configs/prune_digits.py", "--workdir", str(workdir),
                 *overrides]) == 0
    report = json.loads((workdir / "report.json").read_text())
    assert report["model"]["target"] == "user_models:tiny_unet"
    graph = TASKS["tiny_unet"].graph
    save_widths(tmp_path / "w.json", graph, uniform_ratios(graph, 0.5))
    assert main(["prune", "export", "--workdir", str(workdir), "--widths", str(tmp_path / "w.json"),
                 "--out", str(out)]) == 0
    exported = json.loads((out / "report.json").read_text())
    assert exported["max_abs_diff_vs_masked"] < 1e-4 and exported["flops"] == report["flops_by_width"]["0.5"]
    assert IMAGE not in [g for g, _ in graph.layers[1].inputs]
    # the exported user network fine-tunes from its own weights
    assert main(["train", "--config", "experiments/configs/train_digits.py", "--workdir", str(tmp_path / "ft"),
                 f"--config.init_from={out}", "--config.num_steps=2", "--config.batch_size=16"]) == 0
    assert (tmp_path / "ft" / "metrics.jsonl").read_text().strip()


def test_fuse_params_on_a_user_model_of_its_own_layout():
    """``experiments/custom_model.py``'s model in DBB form fuses; so does a pruned copy of
    its plain form (``AtWidths``), whose deploy form keeps the pruned widths."""
    from nas_jax.models import AtWidths
    from nas_jax.models.custom import load_function
    from nas_jax.rep.fuse import fuse_params

    small_net = load_function("experiments/custom_model.py:small_net")
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
    for model in (small_net(10, "dbb"), AtWidths(small_net(10), (("mid/conv", (("features", 8),)),))):
        with jax.enable_x64(True):
            variables = as_float64(random_variables(model, x, seed=2))
            deploy_model, deploy_variables = fuse_params(model, variables, input_shape=(1, 32, 32, 3))
            fused, trained = deploy_model.apply(deploy_variables, as_float64(x)), model.apply(variables, as_float64(x))
        assert fused.dtype == jnp.float64 and rel_l2(fused, trained) < 1e-12
    assert deploy_variables["params"]["mid"]["conv"]["kernel"].shape == (3, 3, 32, 8)
