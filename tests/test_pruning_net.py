"""The PruningNet: exported network == masked forward, gradients reach every generator and
the GCN, and the train / export commands end to end on digits."""
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import Phase, given, settings, strategies as st

from nas_jax.cli import main
from nas_jax.models.network import ZooSpec, load_network, save_network
from nas_jax.pruning.export import export_network
from nas_jax.pruning.graph import zoo_graph
from nas_jax.pruning.pruningnet import expand
from nas_jax.pruning.task import PruningTask, configuration_variables
from nas_jax.pruning.widths import WidthGrid, full_channels, sample_ratios, save_widths, uniform_ratios
from nas_jax.train.task import cross_entropy
from helpers import as_float64, exported_and_masked_in_float64, masked_eval, rel_l2

SIZE = 32
GRID = WidthGrid.arange(0.1, 1.0, 0.1)
TASKS = {name: PruningTask(ZooSpec(name, 10, width, SIZE), GRID, gcn_features=8, gcn_depth=2, generator_hidden=4)
         for name, width in [("resnet18", 0.125), ("mobilenet_v1", 0.125)]}


@pytest.fixture(scope="module")
def images():
    return jax.random.normal(jax.random.key(7), (3, 8, SIZE, SIZE, 3))


@pytest.fixture(scope="module")
def params():
    return {name: jax.jit(task.init)(jax.random.key(0), None)["params"] for name, task in TASKS.items()}


@settings(max_examples=4, deadline=None, phases=(Phase.explicit, Phase.generate))
@given(st.sampled_from(sorted(TASKS)), st.integers(0, 2**31 - 1))
def test_exported_network_equals_masked_forward(images, params, name, seed):
    task = TASKS[name]
    ratios = sample_ratios(jax.random.key(seed), task.graph, GRID)
    _, _, _, exported, reference = exported_and_masked_in_float64(task, params[name], ratios, images)
    assert rel_l2(exported, reference) < 1e-10
    # the masked network really is pruned: its output differs from the full-width one
    full_vars, full_channels = configuration_variables(task, params[name], uniform_ratios(task.graph, 1.0),
                                                       images[:2])
    assert rel_l2(masked_eval(task, full_vars, full_channels, images[2]), reference) > 1e-3


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2"])
def test_deep_exported_network_equals_masked_forward(images, name):
    task = PruningTask(ZooSpec(name, 10, 0.125, SIZE), GRID, gcn_features=8, gcn_depth=2, generator_hidden=4)
    params = jax.jit(task.init)(jax.random.key(0), None)["params"]
    ratios = sample_ratios(jax.random.key(3), task.graph, GRID)
    _, _, _, exported, reference = exported_and_masked_in_float64(task, params, ratios, images)
    assert rel_l2(exported, reference) < 1e-10


def test_save_and_load_network(tmp_path, images, params):
    task = TASKS["resnet18"]
    variables, channels = configuration_variables(task, params["resnet18"], uniform_ratios(task.graph, 0.5),
                                                  images[:1])
    model, pruned = export_network(task.spec, task.graph, variables, channels)
    save_network(tmp_path, task.spec, model, pruned)
    spec, loaded_model, loaded = load_network(tmp_path)
    assert spec == task.spec and loaded_model == model
    assert jax.tree.map(np.shape, loaded) == jax.tree.map(np.shape, pruned)


def test_gradients_reach_every_generator_and_the_gcn(images, params):
    task = TASKS["mobilenet_v1"]
    batch = {"image": images[0], "label": jnp.arange(8) % 10}
    grads = jax.jit(jax.grad(lambda p: task.loss(p, {}, {}, batch, jax.random.key(1), True)[0]))(
        params["mobilenet_v1"])
    gen = grads["pruningnet"]["generators"]
    for i in range(len(task.graph.layers)):
        assert np.abs(np.asarray(gen[f"out_kernel_{i}"])).sum() > 0, task.graph.layers[i].path
    assert np.all(np.abs(np.asarray(gen["hidden_kernel"])).sum(axis=(1, 2)) > 0)
    for layer in grads["pruningnet"]["aggregator"].values():
        assert np.abs(np.asarray(layer["kernel"])).sum() > 0
    assert np.abs(np.asarray(grads["network"]["linear"]["bias"])).sum() > 0  # the classifier's learnt bias


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 40), st.integers(1, 300), st.integers(0, 4), st.integers(0, 2**31 - 1))
def test_expand_has_the_gradients_of_the_plain_product(hidden, size, configurations, seed):
    """``expand``'s hand-written backward against autodiff of ``h @ kernel``, in float64,
    for one hidden vector and (vmapped, the kernel shared) for ``configurations`` of them."""
    with jax.enable_x64(True):
        k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
        batch = (configurations,) if configurations else ()
        h = jax.random.normal(k1, batch + (hidden,), jnp.float64)
        kernel = jax.random.normal(k2, (hidden, size), jnp.float64)
        cotangent = jax.random.normal(k3, batch + (size,), jnp.float64)
        apply = (lambda f: jax.vmap(f, (0, None))) if configurations else (lambda f: f)
        objective = lambda f: lambda h, w: jnp.sum(apply(f)(h, w) * cotangent)  # noqa: E731
        ours = jax.grad(objective(expand), (0, 1))(h, kernel)
        plain = jax.grad(objective(lambda h, w: h @ w), (0, 1))(h, kernel)
        np.testing.assert_allclose(apply(expand)(h, kernel), apply(lambda h, w: h @ w)(h, kernel), rtol=1e-12)
        for a, b in zip(ours, plain):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_bfloat16_pruned_network_follows_the_float32_one(images, params):
    """A bfloat16 task differs from the float32 task by bfloat16 rounding only: measured
    against the zoo model's own bfloat16-vs-float32 difference on the same generated
    weights, its logits at random widths and its generator gradients at full width (those
    are ``hidden x kernel gradient``, so their relative error is the kernel gradient's) stay
    within twice that. Parameters, gradients and logits stay float32. (Two bfloat16 programs
    compiled differently round differently, so exact equality is not the test.)"""
    f32 = TASKS["resnet18"]
    bf16 = PruningTask(f32.spec, GRID, gcn_features=8, gcn_depth=2, generator_hidden=4, dtype="bfloat16")
    p, x, labels = params["resnet18"], images[0], jnp.arange(8) % 10
    variables = jax.jit(f32.generate)(p, full_channels(f32.graph))

    def zoo_loss(model, model_params):  # the zoo model alone, train-mode BatchNorm
        logits = model.apply({"params": model_params, "batch_stats": variables["batch_stats"]}, x, train=True,
                             mutable=["batch_stats"])[0]
        return cross_entropy(logits, labels), logits

    zoo = jax.jit(lambda model: jax.value_and_grad(zoo_loss, 1, has_aux=True)(model, variables["params"]),
                  static_argnums=0)
    (_, zoo16), zoo_grads16 = zoo(bf16.model)
    (_, zoo32), zoo_grads32 = zoo(f32.model)
    rounding = rel_l2(zoo16, zoo32)
    assert 0 < rounding < 0.2

    def task_loss_and_grads(task, train):
        loss_of = lambda p: task.loss(p, {}, {}, {"image": x, "label": labels}, jax.random.key(3), train)  # noqa: E731
        return jax.jit(jax.value_and_grad(loss_of, has_aux=True))(p)

    (_, _), grads16 = task_loss_and_grads(bf16, False)  # full width
    (_, _), grads32 = task_loss_and_grads(f32, False)
    for i, layer in enumerate(f32.graph.layers):
        path = layer.path.split("/") + ([] if i == len(f32.graph.layers) - 1 else ["conv"])
        zoo_error = rel_l2(*(functools.reduce(lambda t, k: t[k], path, g)["kernel"] for g in (zoo_grads16, zoo_grads32)))
        ours = rel_l2(*(g["pruningnet"]["generators"][f"out_kernel_{i}"] for g in (grads16, grads32)))
        assert ours < 2 * zoo_error + 1e-3, (layer.path, ours, zoo_error)

    (loss32, (logits32, _, _)), _ = task_loss_and_grads(f32, True)  # the same random widths
    (loss16, (logits16, _, _)), grads = task_loss_and_grads(bf16, True)
    assert logits16.dtype == jnp.float32 and all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
    assert 0 < rel_l2(logits16, logits32) < 2 * rounding  # it does compute in bfloat16
    assert abs(float(loss16) - float(loss32)) < 2 * rounding * abs(float(loss32))


def test_train_then_export_commands(tmp_path, capsys):
    workdir, out = tmp_path / "run", tmp_path / "export"
    overrides = ["--config.num_steps=2", "--config.log_every=1", "--config.width=0.125",
                 "--config.pruning.calibration_batches=1", "--config.pruning.gcn_features=8",
                 "--config.pruning.generator_hidden=4", "--config.pruning.report_widths=(0.5, 1.0)",
                 "--config.batch_size=16"]
    assert main(["prune", "train", "--config", "experiments/configs/prune_digits.py", "--workdir", str(workdir),
                 *overrides]) == 0
    report = json.loads((workdir / "report.json").read_text())
    assert set(report["accuracy_by_width"]) == {"0.5", "1"}
    assert report["flops_by_width"]["0.5"] < report["flops_by_width"]["1"]
    spec = ZooSpec("resnet18", 10, 0.125, SIZE)
    graph = zoo_graph(spec)
    save_widths(tmp_path / "w.json", graph, uniform_ratios(graph, 0.5))
    assert main(["prune", "export", "--workdir", str(workdir), "--widths", str(tmp_path / "w.json"),
                 "--out", str(out)]) == 0
    exported = json.loads((out / "report.json").read_text())
    assert exported["max_abs_diff_vs_masked"] < 1e-4
    assert exported["flops"] == report["flops_by_width"]["0.5"] and 0 < exported["flops_ratio"] < 1
    # the exported network fine-tunes with `nas-jax train`, starting from its own weights
    from nas_jax.train.config import apply_overrides, load_config
    from nas_jax.train.run import classification_task_from_config
    config = apply_overrides(load_config("experiments/configs/train_digits.py"), [f"--config.init_from={out}"])
    task = classification_task_from_config(config, 10)
    _, _, pruned = load_network(out)
    start = task.init(jax.random.key(0), {"image": np.zeros((1, SIZE, SIZE, 3), np.float32)})
    jax.tree.map(np.testing.assert_array_equal, start["params"], pruned["params"])
    assert main(["train", "--config", "experiments/configs/train_digits.py", "--workdir", str(tmp_path / "ft"),
                 f"--config.init_from={out}", "--config.num_steps=2", "--config.batch_size=16"]) == 0
    assert (tmp_path / "ft" / "metrics.jsonl").read_text().strip()
    # ... and fuses to its deploy form, which records the pruned widths
    capsys.readouterr()
    assert main(["fuse", "--workdir", str(tmp_path / "ft")]) == 0
    fused = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert fused["max_abs_logit_diff"] <= 1e-5 * max(fused["max_abs_logit"], 1.0)
    assert fused["accuracy_deploy"] == fused["accuracy_trained"]
    deploy = json.loads((tmp_path / "ft" / "deploy.json").read_text())
    assert dict(map(tuple, deploy["widths"])) == dict(load_network(out)[1].widths)
    save_widths(tmp_path / "bad.json", zoo_graph(ZooSpec("mobilenet_v1", 10, 0.125, SIZE)),
                uniform_ratios(zoo_graph(ZooSpec("mobilenet_v1", 10, 0.125, SIZE)), 0.5))
    assert main(["prune", "export", "--workdir", str(workdir), "--widths", str(tmp_path / "bad.json"),
                 "--out", str(out)]) == 2


def cross_entropies(logits, labels):
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1)[:, 0]


def test_configurations_per_step_give_each_part_of_the_batch_its_own_configuration(images, params):
    """In float64, so that the vmapped (grouped) and the separate convolutions agree to
    rounding (train-mode BatchNorm over 4 images amplifies float32 summation order); the
    zoo's logits come out as float32."""
    base = TASKS["resnet18"]
    task = PruningTask(base.spec, GRID, gcn_features=8, gcn_depth=2, generator_hidden=4, configurations_per_step=2)
    rng = jax.random.key(11)
    with jax.enable_x64(True):
        ratios = [sample_ratios(k, task.graph, GRID) for k in jax.random.split(rng, 2)]
        assert not np.array_equal(ratios[0], ratios[1])
        p64 = as_float64(params["resnet18"])
        batch = {"image": jnp.asarray(images[0], jnp.float64), "label": jnp.arange(8) % 10}
        loss, (logits, _, _) = jax.jit(lambda p, b: task.loss(p, {}, {}, b, rng, True))(p64, batch)
        halves = batch["image"].reshape(2, 4, *images.shape[2:])
        masked_logits = jax.jit(task.masked_logits)
        parts = jnp.concatenate([masked_logits(p64, r, x) for r, x in zip(ratios, halves)])
        np.testing.assert_allclose(logits, parts, rtol=1e-9, atol=1e-9)
        # the zoo casts logits to float32: the losses agree to float32 rounding
        np.testing.assert_allclose(loss, cross_entropies(parts, batch["label"]).mean(), rtol=1e-6)
        # one configuration per step is the single-configuration task: the step's key draws it
        single_loss, _ = jax.jit(lambda p, b: base.loss(p, {}, {}, b, rng, True))(p64, batch)
        single = masked_logits(p64, sample_ratios(rng, base.graph, GRID), batch["image"])
        np.testing.assert_allclose(single_loss, cross_entropies(single, batch["label"]).mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="does not split into configurations_per_step=3"):
        PruningTask(base.spec, GRID, gcn_features=8, generator_hidden=4, configurations_per_step=3).loss(
            params["resnet18"], {}, {}, {"image": images[0], "label": jnp.arange(8) % 10}, rng, True)


def test_one_configuration_per_device_shard_equals_the_unsharded_loss(images, params):
    """8 configurations on the 8 devices' shards of a batch of 16 (float64, as above)."""
    from nas_jax.train.step import create_mesh, data_sharding
    task = PruningTask(TASKS["resnet18"].spec, GRID, gcn_features=8, gcn_depth=2, generator_hidden=4,
                       configurations_per_step=8)
    mesh = create_mesh()
    assert mesh.size == 8
    with jax.enable_x64(True):
        p64 = as_float64(params["resnet18"])
        batch = {"image": jnp.asarray(jnp.concatenate([images[0], images[1]]), jnp.float64),
                 "label": jnp.arange(16) % 10}
        def loss_of(p, b):
            loss, (logits, _, _) = task.loss(p, {}, {}, b, jax.random.key(2), True)
            return loss, logits

        sharded_loss, sharded_logits = jax.jit(loss_of)(p64, jax.device_put(batch, data_sharding(mesh)))
        loss, logits = jax.jit(loss_of)(p64, batch)
    np.testing.assert_allclose(sharded_logits, logits, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sharded_loss, loss, rtol=1e-6)


@pytest.mark.parametrize("name,model", [("prune_imagenet_mobilenet_v2.py", "mobilenet_v2"),
                                        ("prune_imagenet_mobilenet_v1.py", "mobilenet_v1"),
                                        ("prune_imagenet_resnet50.py", "resnet50")])
def test_imagenet_pruning_configs_build_their_task_on_mock_data(name, model):
    import tensorflow_datasets as tfds

    from nas_jax.pruning.workdir import load_run_config, pruning_task
    overrides = ["--config.data_dir=/nonexistent", "--config.num_workers=0", "--config.width=0.125",
                 "--config.image_size=32"]
    with tfds.testing.mock_data(num_examples=16):
        config = load_run_config(f"experiments/configs/{name}", overrides)
        task = pruning_task(config)
        assert config.model == task.spec.name == model and task.spec.num_classes == 1000
        assert task.model.dtype == jnp.bfloat16
        assert len(task.grid.ratios) == 31 and task.configurations_per_step == 8
        with pytest.raises(ValueError, match="batch_size 100 does not split"):
            pruning_task(load_run_config(f"experiments/configs/{name}", overrides + ["--config.batch_size=100"]))


def test_a_run_without_a_pruning_section_is_refused():
    from nas_jax.pruning.workdir import pruning_task
    from nas_jax.train.config import default_config
    with pytest.raises(ValueError, match="not a pruning run"):
        pruning_task(default_config())
