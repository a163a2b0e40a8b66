"""The whole pruning pipeline on linen models nobody here wrote (``tests/external_models.py``:
flaxmodels' ResNet18 with its own BatchNorm class, jax-resnet's ResNet18 behind the
contract's adapter): graph, exported == masked in float64 with FLOPs counted from the
exported jaxpr, and the commands prune train -> search -> export -> train from the export."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flaxmodels", reason="the external models need: pip install -e '.[external]'")
jax_resnet = pytest.importorskip("jax_resnet", reason="the external models need: pip install -e '.[external]'")

from nas_jax.cli import main  # noqa: E402
from nas_jax.models.custom import CustomSpec  # noqa: E402
from nas_jax.pruning.cost import network_cost  # noqa: E402
from nas_jax.pruning.task import PruningTask  # noqa: E402
from nas_jax.pruning.widths import WidthGrid, full_channels, uniform_ratios  # noqa: E402
from helpers import exported_and_masked_in_float64, jaxpr_macs, rel_l2  # noqa: E402
import external_models  # noqa: E402

SIZE = 16
GRID = WidthGrid.arange(0.25, 1.0, 0.25)
MODELS = ("flaxmodels_resnet18", "jax_resnet18")
COMPUTES_IN = {name: jnp.dtype(dtype) for name, dtype in external_models.COMPUTES_IN.items()}
TOLERANCE = {jnp.dtype("float32"): 1e-5, jnp.dtype("float64"): 1e-10}  # the two forms agree to rounding


@pytest.fixture(scope="module", params=MODELS)
def task(request):
    spec = CustomSpec(f"external_models:{request.param}", 10, SIZE)
    return request.param, PruningTask(spec, GRID, gcn_features=8, gcn_depth=2, generator_hidden=2)


def test_the_graph_of_a_published_resnet18(task):
    """Stem, 16 block convs and the 1x1 projections (jax-resnet also projects its first stage,
    whose stem is 64 wide and blocks 8 wide), each with its BatchNorm (flaxmodels' own class
    included); each stage's residual stream couples its projection (or the stem) and its two
    blocks' second convs; only the classifier is fixed."""
    name, task = task
    graph = task.graph
    convs = [layer for layer in graph.layers if layer.kind == "conv"]
    assert len(convs) == {"flaxmodels_resnet18": 20, "jax_resnet18": 21}[name]
    assert graph.layers[-1].kind == "dense" and len(graph.layers) == len(convs) + 1
    assert len(graph.batch_norms) == len(convs)
    assert sorted(len(g.layers) for g in graph.groups if len(g.layers) > 1) == [3, 3, 3, 3]
    assert [g.fixed for g in graph.groups] == [False] * (len(graph.groups) - 1) + [True]


def test_exported_equals_masked_in_float64_and_costs_what_the_graph_says(task):
    name, task = task
    params = jax.jit(task.init)(jax.random.key(0), None)["params"]
    images = jax.random.normal(jax.random.key(5), (3, 8, SIZE, SIZE, 3))
    ratios = uniform_ratios(task.graph, 0.5)
    model, pruned, channels, exported, reference = exported_and_masked_in_float64(task, params, ratios, images,
                                                                                 COMPUTES_IN[name])
    assert rel_l2(exported, reference) < TOLERANCE[COMPUTES_IN[name]]
    cost, full = network_cost(task.graph, channels), network_cost(task.graph, full_channels(task.graph))
    jaxpr = jax.make_jaxpr(lambda x: model.apply(pruned, x, train=False))(jnp.zeros((1, SIZE, SIZE, 3)))
    assert cost["flops"] == jaxpr_macs(jaxpr.jaxpr)
    assert cost["params"] == sum(int(np.size(a)) for a in jax.tree.leaves(pruned["params"]))
    assert cost["flops"] <= 0.5 * full["flops"]  # every layer keeps half its inputs or outputs or both


@pytest.mark.parametrize("name", MODELS)
def test_prune_train_search_export_and_fine_tune(tmp_path, capsys, name):
    run, out = tmp_path / "run", tmp_path / "export"
    assert main(["prune", "train", "--config", "experiments/configs/prune_digits.py", "--workdir", str(run),
                 f"--config.model=external_models:{name}", "--config.image_size=16", "--config.width=1.0",
                 "--config.batch_size=16", "--config.num_steps=2", "--config.pruning.calibration_batches=1",
                 "--config.pruning.gcn_features=8", "--config.pruning.generator_hidden=2",
                 "--config.pruning.report_widths=(0.5, 1.0)"]) == 0
    assert main(["prune", "search", "--workdir", str(run), "--method", "uniform", "--budget", "flops=0.5"]) == 0
    best = next((run / "search").rglob("best.json"))
    assert main(["prune", "export", "--workdir", str(run), "--widths", str(best), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["max_abs_diff_vs_masked"] < 1e-4 and 0.4 < report["flops_ratio"] <= 0.5
    assert main(["train", "--config", "experiments/configs/train_digits.py", "--workdir", str(tmp_path / "ft"),
                 f"--config.init_from={out}", "--config.num_steps=2", "--config.batch_size=16"]) == 0
    capsys.readouterr()
    assert main(["eval", "--workdir", str(tmp_path / "ft")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["count"] > 0


def test_fuse_params_folds_every_conv_batch_norm_pair(task):
    """Each conv's BatchNorm folds into it (flaxmodels' own BatchNorm class included), and
    the folded network computes the trained one."""
    from nas_jax.rep.fuse import fuse_params
    from helpers import as_float64, random_variables
    name, task = task
    model = task.spec.model()
    x = jax.random.normal(jax.random.key(1), (2, SIZE, SIZE, 3))
    with jax.enable_x64(True):
        variables = as_float64(random_variables(model, x, seed=3))
        deploy_model, deploy = fuse_params(model, variables, input_shape=(1, SIZE, SIZE, 3))
        fused = deploy_model.apply(deploy, as_float64(x), train=False)
        trained = model.apply(variables, as_float64(x), train=False)
    assert len(deploy_model.folded) == len(task.graph.batch_norms) and "batch_stats" not in deploy
    assert fused.dtype == COMPUTES_IN[name] and rel_l2(fused, trained) < TOLERANCE[COMPUTES_IN[name]]


def test_a_published_model_the_graph_cannot_follow_is_named_with_its_op_and_layer():
    """jax-resnet's ResNeSt splits a conv's channels into radix groups (``split``) and sums
    them: the graph cannot prune through that and says where."""
    from nas_jax.pruning.graph import build_layer_graph
    model = external_models.Adapted(jax_resnet.ResNeSt50(n_classes=10, hidden_sizes=(8, 16, 32, 64)))
    with pytest.raises(NotImplementedError, match=r"layer net/layers_2/SplAtConv2d_0/ConvBlock_1/Conv_0: its input "
                                                  r"passes through `split`.*keep_full="):
        build_layer_graph(model, (1, SIZE, SIZE, 3))
