"""The RepNAS job end to end on a tiny backbone: a run stopped in any phase and resumed
gives the uninterrupted result; the outputs and the report; the official-checkpoint
import; the ImageNet configs on mock data; bad settings fail before training."""
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.experimental.compilation_cache import compilation_cache

from helpers import randomize, train_losses
from nas_jax import cli
from nas_jax.interop import flax_to_torch
from nas_jax.models import create_model
from nas_jax.rep.fuse import deploy_form
from nas_jax.repnas.config import repnas_section
from nas_jax.repnas.genotype import read_genotype_mask
from nas_jax.repnas.searchable import find_searchable_layers, static_branch_mask
from nas_jax.repnas.masks import kept_mask
from nas_jax.repnas.run import build_task, search
from nas_jax.repnas.task import fixed_phase_start
from nas_jax.train import create_mesh, create_optimizer, create_train_state, default_config, load_config
from nas_jax.train.config import apply_overrides
from nas_jax.train.loop import train
from nas_jax.train.run import Run, example_batch, pipeline_from_config
from nas_jax.train.task import ClassificationTask
from nas_jax.train.metrics import read_metrics
from repnas_helpers import TinyNet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 16
STEPS_PER_EPOCH = 1078 // BATCH  # the digits train split
RANDOM_STEPS, SEARCH_STEPS, TOTAL_STEPS = 2, 3, 7


def tiny_config(checkpoint_every=TOTAL_STEPS, **repnas):
    c = default_config()
    c.model, c.block = "tiny", "repnas"
    c.num_steps, c.batch_size, c.eval_batch_size = TOTAL_STEPS, BATCH, 400
    c.log_every, c.checkpoint_every, c.warmup_steps, c.grad_clip_norm = 1, checkpoint_every, 2, 5.0
    settings = dict(random_epochs=RANDOM_STEPS / STEPS_PER_EPOCH, search_epochs=SEARCH_STEPS / STEPS_PER_EPOCH,
                    alpha_learning_rate=0.05, kept_ratio=0.5)
    c.repnas = repnas_section(**{**settings, **repnas})
    return c


def outputs(workdir):
    """Everything a run's result is: genotype (mask and alphas), report, deploy weights, losses."""
    with open(os.path.join(workdir, "genotype.json")) as f:
        genotype = json.load(f)
    with open(os.path.join(workdir, "report.json")) as f:
        report = json.load(f)
    with ocp.StandardCheckpointer() as checkpointer:
        deploy = checkpointer.restore(os.path.join(workdir, "deploy"))
    losses = train_losses(workdir)
    return genotype, report, deploy, losses


@pytest.fixture(scope="module", autouse=True)
def persistent_compilation_cache(tmp_path_factory):
    """A persistent XLA cache for this module: the runs here compile the same steps again
    and again (each ``train`` call, a resumed one too, compiles its own), so all but the
    first are cache hits. The previous settings come back afterwards."""
    previous = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    compilation_cache.reset_cache()
    yield
    jax.config.update("jax_compilation_cache_dir", previous[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])
    compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def uninterrupted_workdir(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    search(tiny_config(), workdir, model=TinyNet(), progress_bar=False)
    return workdir


@pytest.fixture(scope="module")
def uninterrupted(uninterrupted_workdir):
    return outputs(uninterrupted_workdir)


def test_run_writes_every_output_and_a_consistent_report(uninterrupted, uninterrupted_workdir):
    genotype, report, deploy, losses = uninterrupted
    assert sorted(losses) == list(range(1, TOTAL_STEPS + 1))
    assert [row["path"] for row in genotype["layers"]] == ["conv1", "conv2", "conv3"]
    assert report["kept_branches"] == genotype["kept_branches"] == int(3 * 6 * 0.5)
    assert report["total_branches"] == 18 and report["fix_step"] == RANDOM_STEPS + SEARCH_STEPS
    assert report["fused_vs_supernet_max_abs_logit_diff"] < 1e-4
    assert report["fused_test_accuracy"] == report["supernet_test_accuracy"]
    assert report["test_examples"] == 360 and report["wall_s"] > 0
    for picture in ("alphas.png", "mask_frequency.png", "mask_trace.png", "training_curve.png"):
        assert os.path.getsize(os.path.join(uninterrupted_workdir, picture)) > 0
    # deploy: one conv with bias per layer; the plain network has a BN (scale + bias) instead of a bias
    convs = [deploy["params"][p]["conv"] for p in ("conv1", "conv2", "conv3", "head")]
    assert report["deploy_params"] == sum(c["kernel"].size + c["bias"].size for c in convs) + \
        deploy["params"]["linear"]["kernel"].size + deploy["params"]["linear"]["bias"].size
    assert report["plain_params"] == report["deploy_params"] + sum(c["bias"].size for c in convs)
    alphas = np.array([row["alphas"] for row in genotype["layers"]])
    assert np.abs(alphas).max() > 0  # trained in phase 2


def test_mask_trace_snapshots_the_noise_free_mask_over_the_search():
    config = tiny_config(random_epochs=1 / STEPS_PER_EPOCH, search_epochs=130 / STEPS_PER_EPOCH)
    config.num_steps = 140
    data = pipeline_from_config(config, "train")
    task = build_task(config, data, TinyNet())
    schedule = task.schedule
    assert (schedule.random_steps, schedule.search_steps, schedule.trace_snapshots) == (1, 130, 64)
    state = create_train_state(task, create_optimizer(config, 140)[0], 0, example_batch(data), create_mesh())
    update, extra, last_in_slot = jax.jit(task.update_extra), state.extra, {}
    for step in range(schedule.fix_step):
        grads = {"alphas": jax.random.normal(jax.random.key(step), extra["alphas"].shape)}
        extra = update(extra, grads, jnp.asarray(step), jax.random.key(100 + step))
        if step >= schedule.random_steps:
            last_in_slot[(step - schedule.random_steps) * 64 // 130] = np.asarray(kept_mask(extra["alphas"],
                                                                                           task.budget))
    assert sorted(last_in_slot) == list(range(64))  # every snapshot written, in order
    np.testing.assert_array_equal(np.asarray(extra["mask_trace"]), np.stack([last_in_slot[s] for s in range(64)]))
    assert (np.asarray(extra["mask_trace"]).sum(axis=(1, 2)) == task.budget.k).all()


def test_resume_in_every_phase_gives_the_uninterrupted_result(uninterrupted, tmp_path):
    """Stopped (as a kill would stop it) in the random phase, in the search phase, right
    at the fixing point and in the fixed phase, each time resumed from its checkpoint."""
    workdir, config = str(tmp_path), tiny_config(checkpoint_every=1)
    for stop_at in (1, RANDOM_STEPS + 1, RANDOM_STEPS + SEARCH_STEPS, TOTAL_STEPS - 1):
        assert search(config, workdir, model=TinyNet(), stop_at_step=stop_at, progress_bar=False) is None
    search(config, workdir, model=TinyNet(), progress_bar=False)
    genotype, report, deploy, losses = outputs(workdir)
    expected_genotype, expected_report, expected_deploy, expected_losses = uninterrupted
    assert genotype == expected_genotype
    assert losses == expected_losses
    jax.tree.map(np.testing.assert_array_equal, deploy, expected_deploy)
    for key in ("supernet_test_accuracy", "fused_test_accuracy", "fused_vs_supernet_max_abs_logit_diff"):
        assert report[key] == expected_report[key]


def test_fixing_takes_the_noise_free_top_k_and_resets_bn_statistics(uninterrupted_workdir):
    config = tiny_config()
    data = pipeline_from_config(config, "train")
    task = build_task(config, data, TinyNet())
    tx, _ = create_optimizer(config, TOTAL_STEPS)
    state = create_train_state(task, tx, 0, example_batch(data), create_mesh())
    alphas = jax.random.normal(jax.random.key(5), state.extra["alphas"].shape)
    state = state.replace(extra={**state.extra, "alphas": alphas}, batch_stats=randomize(state.batch_stats))
    expected = np.asarray(kept_mask(alphas, task.budget)) > 0
    assert expected.sum() == task.budget.k
    np.testing.assert_array_equal(task.fixed_mask(state.extra), expected)
    fixed = fixed_phase_start(state)
    assert fixed.extra == {} and int(fixed.step) == int(state.step)
    jax.tree.map(np.testing.assert_array_equal, fixed.params, state.params)
    jax.tree.map(np.testing.assert_array_equal, fixed.opt_state, state.opt_state)
    for path, leaf in jax.tree_util.tree_leaves_with_path(fixed.batch_stats):
        np.testing.assert_array_equal(leaf, np.full(leaf.shape, 1.0 if path[-1].key == "var" else 0.0))
    # the job: the search stops at the fixing point, the fixed run goes on from there
    fix_step = task.schedule.fix_step
    assert steps_in(uninterrupted_workdir, "search_checkpoints")[-1] == fix_step
    assert steps_in(uninterrupted_workdir, "checkpoints") == [TOTAL_STEPS]
    # `eval` / `fuse` would read the fixed phase's state as the whole supernet: refused
    with pytest.raises(ValueError, match="holds a `nas-jax repnas` run"):
        Run.restore(uninterrupted_workdir).classification_task()


def test_online_supernet_searches_through_the_collapsed_kernel_and_fuses_exactly(tmp_path):
    """block='repnas_online': the alphas learn through the kernel-level mask, the fixed
    sub-network trains as online blocks and its fused form gives the same predictions."""
    config = tiny_config()
    config.block = "repnas_online"
    report = search(config, str(tmp_path), model=TinyNet(block="repnas_online"), progress_bar=False)
    genotype, _, deploy, losses = outputs(str(tmp_path))
    assert sorted(losses) == list(range(1, TOTAL_STEPS + 1)) and np.isfinite(list(losses.values())).all()
    assert np.abs(np.array([row["alphas"] for row in genotype["layers"]])).max() > 0
    assert report["kept_branches"] == int(3 * 6 * 0.5)
    assert report["fused_vs_supernet_max_abs_logit_diff"] < 1e-4
    assert report["fused_test_accuracy"] == report["supernet_test_accuracy"]
    assert sorted(deploy["params"]["conv2"]) == ["conv"]


def steps_in(workdir, directory):
    return sorted(int(s) for s in os.listdir(os.path.join(workdir, directory)) if s.isdigit())


@pytest.mark.parametrize("overrides,message", [
    (["--config.repnas.kept_ratio=0.0"], "kept_ratio must be in (0, 1]"),
    (["--config.repnas.kept_ratio=1.5"], "kept_ratio must be in (0, 1]"),
    (["--config.repnas.kept_ratio=0.1"], "less than one per layer"),
    (["--config.repnas.budget=cost", "--config.repnas.kept_ratio=0.01"], "less than one branch per layer"),
    (["--config.repnas.per_layer_cap=1"], "do not fit under per_layer_cap"),
    (["--config.repnas.search_epochs=20.0"], "needs at least one step"),
    (["--config.block=dbb"], "a RepNAS config needs block in"),
    (["--config.block=repnas_online", "--config.repnas.branch_compute=cond"], "an online supernet"),
    (["--config.repnas.fixed_start=pretrained"], "choose one of ('search', 'scratch')"),
    (["--config.repnas.fixed_mask=/no/such/genotype.json"], "nor an existing genotype.json file"),
    (["--config.repnas.fixed_mask=one_shot", "--config.repnas.one_shot_candidates=0"], "must both be >= 1"),
])
def test_bad_settings_fail_before_training(tmp_path, capsys, overrides, message):
    config = os.path.join(REPO, "experiments", "configs", "repnas_digits.py")
    assert cli.main(["repnas", "--config", config, "--workdir", str(tmp_path), *overrides]) == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(os.path.join(str(tmp_path), "checkpoints"))
    assert not os.path.exists(os.path.join(str(tmp_path), "search_checkpoints"))


def test_a_genotype_file_of_another_model_fails_before_training(tmp_path, capsys):
    genotype_path = str(tmp_path / "other.json")
    with open(genotype_path, "w") as f:
        json.dump({"layers": [{"path": "stem/conv", "kept": ["conv3x3"]}]}, f)
    config = os.path.join(REPO, "experiments", "configs", "repnas_digits.py")
    workdir = str(tmp_path / "run")
    assert cli.main(["repnas", "--config", config, "--workdir", workdir,
                     f"--config.repnas.fixed_mask={genotype_path}"]) == 2
    assert "its layers do not match the model's" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(workdir, "search_checkpoints"))


def test_backbone_without_searchable_layer_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="no RepNAS searchable layer"):
        search(tiny_config(), str(tmp_path), model=TinyNet(kernel_size=1), progress_bar=False)
    assert not os.path.exists(os.path.join(str(tmp_path), "checkpoints"))
    assert not os.path.exists(os.path.join(str(tmp_path), "search_checkpoints"))


def _official_state_dict(model, variables, alphas):
    """What the official supernet's ``state_dict()`` holds: our variables under PyTorch
    names, plus ``alphas`` and each MixedOp's unused weight-sharing ``conv``."""
    state_dict = flax_to_torch({"params": variables["params"], "batch_stats": variables["batch_stats"]})
    for i in range(alphas.shape[0]):
        out, inp = state_dict[f"features.{i}._ops.2.conv.weight"].shape[:2]
        state_dict[f"features.{i}.conv.conv.weight"] = np.ones((out, inp, 3, 3), np.float32)
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            state_dict[f"features.{i}.conv.bn.{name}"] = np.full((out,), value, np.float32)
    state_dict["alphas"] = np.asarray(alphas)
    return state_dict


def test_import_official_supernet_fuses_and_matches_the_supernet(tmp_path, capsys):
    model = create_model("repvgg_a0", block="repnas", num_classes=10, width=0.0625)
    layers = find_searchable_layers(model, (1, 32, 32, 3))
    x = jnp.asarray(next(pipeline_from_config(tiny_config(), "test").eval_batches(8))["image"])
    variables = randomize(jax.eval_shape(model.init, jax.random.key(0), x), seed=3, scale=0.2)
    alphas = np.asarray(jax.random.normal(jax.random.key(1), (len(layers), 6)))
    checkpoint = str(tmp_path / "supernet.npz")
    np.savez(checkpoint, **_official_state_dict(model, variables, alphas))
    workdir = str(tmp_path / "imported")
    assert cli.main(["repnas", "import", "--checkpoint", checkpoint, "--model", "repvgg_a0", "--width", "0.0625",
                     "--num-classes", "10", "--workdir", workdir, "--split", "test"]) == 0
    report = json.loads(capsys.readouterr().out)
    with open(os.path.join(workdir, "genotype.json")) as f:
        genotype = json.load(f)
    order = np.argsort(-alphas, axis=None)[:int(len(layers) * 6 * 0.34)]
    expected = np.zeros(alphas.size, bool)
    expected[order] = True
    names = genotype["primitives"]
    got = np.array([[p in row["kept"] for p in names] for row in genotype["layers"]])
    np.testing.assert_array_equal(got.reshape(-1), expected)
    assert report["kept_branches"] == expected.sum() and report["mask_source"] == "alphas"
    # the imported, fused network computes what our supernet computes on that mask
    fixed = model.clone(branch_mask=static_branch_mask([layer.path for layer in layers], got))
    with ocp.StandardCheckpointer() as checkpointer:
        deploy = checkpointer.restore(os.path.join(workdir, "deploy"))
    expected_logits = jax.jit(lambda v: fixed.apply(v, x))(variables)
    deploy_logits = jax.jit(lambda v: deploy_form(model).apply(v, x, train=False))(deploy)
    scale = float(np.abs(expected_logits).max())
    np.testing.assert_allclose(deploy_logits, expected_logits, rtol=1e-4, atol=1e-4 * scale)
    assert report["fused_vs_supernet_max_abs_logit_diff"] <= 1e-4 * max(scale, 1.0)
    # the mask can also be given back as the genotype.json
    np.testing.assert_array_equal(read_genotype_mask(os.path.join(workdir, "genotype.json"),
                                                     [layer.path for layer in layers]), got)


def test_imagenet_configs_on_mock_data(tmp_path):
    """The ImageNet configs on tfds mock data: each backbone's supernet and budget build;
    the schedule, optimisers and bf16 pipeline run a few steps through every phase (on
    the tiny backbone: compiling a full-depth search step takes minutes on a CPU)."""
    import tensorflow_datasets as tfds

    overrides = ["--config.data_dir=/nonexistent", "--config.image_size=32", "--config.batch_size=16",
                 "--config.eval_batch_size=16", "--config.num_workers=0", "--config.width=0.0625"]
    with tfds.testing.mock_data(num_examples=48):
        for name, backbone, layers in (("repnas_imagenet_resnet18.py", "resnet18", 16),
                                       ("repnas_imagenet_repvgg_a0.py", "repvgg_a0", 22)):
            config = apply_overrides(load_config(os.path.join(REPO, "experiments", "configs", name)), overrides)
            task = build_task(config, pipeline_from_config(config, config.train_split))
            assert config.model == backbone and len(task.layers) == layers and config.dtype == "bfloat16"
            assert task.budget.k == int(layers * 6 * 0.34)
            # 3 steps per epoch: 15 random epochs, 35 search epochs, 150 in all
            assert (task.schedule.random_steps, task.schedule.fix_step, task.schedule.total_steps) == (45, 150, 450)
        config = apply_overrides(config, ["--config.num_steps=3", "--config.repnas.random_epochs=0.34",
                                          "--config.repnas.search_epochs=0.34", "--config.log_every=1",
                                          "--config.eval_every=0", "--config.warmup_steps=1"])
        report = search(config, str(tmp_path), model=TinyNet(num_classes=1000), progress_bar=False)
    assert report["steps"] == 3 and (report["random_steps"], report["search_steps"]) == (1, 1)
    assert report["fused_vs_supernet_max_abs_logit_diff"] < 1e-3


SEARCH_UNTIL_THE_FIX_STEP = """
import sys
from nas_jax.repnas.run import build_task
from nas_jax.train import load_config
from nas_jax.train.config import apply_overrides
from nas_jax.train.loop import train
from nas_jax.train.run import Run, pipeline_from_config
config = apply_overrides(load_config(sys.argv[1]), sys.argv[3:])
task = build_task(config, pipeline_from_config(config, config.train_split))
train(Run(config, sys.argv[2], job="repnas"), task, until=task.schedule.fix_step, checkpoint_dir="search",
      progress_bar=False)
"""


@pytest.mark.parametrize("block", ["repnas", "repnas_online"])
def test_the_supernet_learns_during_its_search(tmp_path, block):
    """The main job's search phase (digits, ResNet-18 x0.25, 32 steps of random masks then
    64 of searched ones): the supernet's train accuracy at the fix step is far above chance
    (0.1). With the paper's sampling (a new mask every step, branches starting at full
    scale) it stays near chance (0.17 measured, exact block); the defaults reach about 0.8
    (experiments/search_sanity.py). It runs as the main job does, in a process of its own
    on one CPU device with XLA's usual optimisations (with this suite's 8 devices and
    unoptimised backend the 96 real training steps took 1.6 times as long)."""
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    subprocess.run([sys.executable, "-c", SEARCH_UNTIL_THE_FIX_STEP,
                    os.path.join(REPO, "experiments", "configs", "repnas_digits.py"), str(tmp_path),
                    f"--config.block={block}"], check=True, cwd=REPO, env={**env, "JAX_PLATFORMS": "cpu"})
    rows = [r for r in read_metrics(str(tmp_path)) if r["split"] == "train"]
    assert rows[-1]["step"] == 96
    assert rows[-1]["accuracy"] >= 0.6, rows


@pytest.mark.parametrize("mask_seed", [-1, 7])
def test_a_random_mask_baseline_trains_the_mask_of_its_seed(uninterrupted_workdir, tmp_path, mask_seed):
    """``repnas.fixed_mask='random'`` from the searched run's fix step trains the random
    mask of ``random_mask_seed`` (the config's seed when -1) under the same budget."""
    shutil.copytree(os.path.join(uninterrupted_workdir, "search_checkpoints"),
                    os.path.join(str(tmp_path), "search_checkpoints"))
    config = tiny_config(fixed_mask="random", random_mask_seed=mask_seed)
    report = search(config, str(tmp_path), model=TinyNet(), progress_bar=False)
    task = build_task(config, pipeline_from_config(config, config.train_split), TinyNet())
    mask = read_genotype_mask(os.path.join(str(tmp_path), "genotype.json"), task.paths)
    expected = task.random_mask(config.seed if mask_seed < 0 else mask_seed)
    np.testing.assert_array_equal(mask, expected)
    assert report["kept_branches"] == int(expected.sum()) == int(3 * 6 * 0.5)
    assert report["fixed_mask"] == "random"
    assert not np.array_equal(task.random_mask(0), task.random_mask(7))


def test_one_shot_keeps_the_candidate_the_supernet_scores_best(uninterrupted_workdir, tmp_path):
    """``repnas.fixed_mask='one_shot'``: each candidate's loss and accuracy are the fix-step
    supernet's, recomputed here by the fixed sub-network of that mask (static branches, another code
    path) on the same validation images, and the mask kept is the lowest-loss candidate."""
    workdir = str(tmp_path)
    shutil.copytree(os.path.join(uninterrupted_workdir, "search_checkpoints"), os.path.join(workdir, "search_checkpoints"))
    config = tiny_config(fixed_mask="one_shot", one_shot_candidates=5, one_shot_examples=100)
    report = search(config, workdir, model=TinyNet(), progress_bar=False)
    run = Run(config, workdir, job="repnas")
    task = build_task(config, run.train_data, TinyNet())
    state = run.restored_state(task, "search_checkpoints")
    assert int(state.step) == RANDOM_STEPS + SEARCH_STEPS
    examples = 100 // jax.device_count() * jax.device_count()
    batch = next(iter(run.pipeline(config.eval_split).eval_batches(examples)))
    candidates = task.random_masks(config.seed, 5)
    assert len({c.tobytes() for c in candidates}) == 5
    expected, accuracies = [], []
    for mask in candidates:
        logits, _ = task.fixed_model(mask).apply({"params": state.params, "batch_stats": state.batch_stats},
                                                 batch["image"], train=True, mutable=["batch_stats"])
        log_p = jax.nn.log_softmax(np.asarray(logits, np.float64))
        expected.append(-np.mean(log_p[np.arange(examples), batch["label"]]))
        accuracies.append(np.mean(np.argmax(log_p, -1) == batch["label"]))
    assert np.ptp(expected) > 1e-3  # the candidates do score apart
    record = report["one_shot"]
    assert record["examples"] == examples and record["chosen"] == int(np.argmin(expected))
    np.testing.assert_allclose(record["losses"], expected, rtol=1e-4)
    np.testing.assert_allclose(record["accuracies"], accuracies, atol=1.5 / examples)
    np.testing.assert_array_equal(read_genotype_mask(os.path.join(workdir, "genotype.json"), task.paths),
                                  candidates[record["chosen"]])


def test_one_shot_from_a_uniform_supernet_has_no_search_phase(tmp_path):
    """``repnas.search_epochs=0`` with ``fixed_mask='one_shot'`` (the README's one-shot
    selection): random masks up to the fix step, no alpha step, so no search pictures and no
    alpha-gradient summary; the kept mask is the best-scored candidate."""
    config = tiny_config(random_epochs=(RANDOM_STEPS + SEARCH_STEPS) / STEPS_PER_EPOCH, search_epochs=0.0,
                         fixed_mask="one_shot", one_shot_candidates=4, one_shot_examples=64)
    report = search(config, str(tmp_path), model=TinyNet(), progress_bar=False)
    assert (report["search_steps"], report["fix_step"]) == (0, RANDOM_STEPS + SEARCH_STEPS)
    assert report["steps"] == TOTAL_STEPS and "alpha_gradient" not in report
    assert not any(os.path.exists(tmp_path / name) for name in ("alphas.png", "mask_trace.png", "mask_frequency.png"))
    record = report["one_shot"]
    assert record["candidates"] == 4 and record["chosen"] == int(np.argmin(record["losses"]))


def test_scratch_trains_a_genotype_files_mask_from_a_fresh_start_without_a_search(uninterrupted_workdir, tmp_path):
    """``fixed_mask=<genotype.json>, fixed_start='scratch'``: no search phase, and the whole
    schedule is the fixed sub-network trained from its own initialisation, as the plain
    training loop trains that sub-network."""
    genotype_path = os.path.join(uninterrupted_workdir, "genotype.json")
    config = tiny_config(fixed_mask=genotype_path, fixed_start="scratch")
    report = search(config, str(tmp_path / "scratch"), model=TinyNet(), progress_bar=False)
    assert not os.path.exists(str(tmp_path / "scratch" / "search_checkpoints"))
    assert report["fixed_start"] == "scratch" and "alpha_gradient" not in report
    task = build_task(config, pipeline_from_config(config, config.train_split), TinyNet())
    mask = read_genotype_mask(genotype_path, task.paths)
    np.testing.assert_array_equal(read_genotype_mask(str(tmp_path / "scratch" / "genotype.json"), task.paths), mask)

    reference = str(tmp_path / "reference")
    train(Run(config, reference, job="repnas"), ClassificationTask(task.fixed_model(mask), config.label_smoothing),
          progress_bar=False)
    losses = train_losses(str(tmp_path / "scratch"))
    assert sorted(losses) == list(range(1, TOTAL_STEPS + 1))
    assert losses == train_losses(reference)
    assert losses[TOTAL_STEPS] != train_losses(uninterrupted_workdir)[TOTAL_STEPS]
