"""Many processes, one job: real ``nas-jax`` processes on 127.0.0.1 (CPU, gloo collectives),
each with one device, against one process with as many devices; a job killed mid-run
and restarted; and how each process's data is cut from the global batches."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import FAST_COMPILE
from nas_jax.data import create_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = ["train", "--config", "experiments/configs/train_digits.py", "--config.num_steps=8", "--config.batch_size=16",
         "--config.log_every=1", "--config.checkpoint_every=2", "--config.eval_every=4"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, devices: int, log):
    """``nas-jax args`` (``args[0]`` a script instead: ``tests/tiny_repnas_cli.py``)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.path.join(REPO, "tests"),
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}"}
    entry = [args[0]] if args[0].endswith(".py") else ["-m", "nas_jax.cli", args[0]]
    return subprocess.Popen([sys.executable, *entry, *args[1:]], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def _job(args, workdir, processes: int, logs):
    """Starts ``args --workdir workdir`` as ``processes`` processes of one device each (one
    process of two devices when ``processes`` is 1)."""
    args = [*args, "--workdir", str(workdir)]
    if processes == 1:
        return [_start(args, 2, open(logs / "single.log", "a"))]
    port = _free_port()
    return [_start([*args, "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", str(processes),
                    "--process_id", str(i)], 1, open(logs / f"p{i}.log", "a"))
            for i in range(processes)]


def _wait(procs, timeout=300):
    for p in procs:
        assert p.wait(timeout) == 0, f"a process exited with {p.returncode}"


def _metrics(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _checkpoint(workdir, step):
    import orbax.checkpoint as ocp
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(workdir / "checkpoints" / str(step) / "state")


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The reference: one process with two devices."""
    root = tmp_path_factory.mktemp("single")
    _wait(_job(TRAIN, root / "run", 1, root))
    return root / "run"


def test_two_processes_compute_what_one_process_with_two_devices_computes(single, tmp_path):
    """Then the two-process job is killed mid-run (one process first, as a lost host) and
    restarted: it resumes from its last complete checkpoint and ends where the
    uninterrupted run ends."""
    run = tmp_path / "run"
    procs = _job(TRAIN, run, 2, tmp_path)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "4").is_dir():  # killed once steps 2 and 4 are saved
        assert time.time() < deadline and all(p.poll() is None for p in procs), "the job ended before step 4"
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGKILL)
    time.sleep(2)
    procs[0].send_signal(signal.SIGKILL)
    for p in procs:
        p.wait(60)
    done = {int(d) for d in os.listdir(run / "checkpoints") if d.isdigit()}
    assert 4 in done and 8 not in done, done
    _wait(_job(TRAIN, run, 2, tmp_path))  # the restart

    ours, reference = _metrics(run), _metrics(single)
    assert [(m["step"], m["split"]) for m in ours] == [(m["step"], m["split"]) for m in reference]
    for a, b in zip(ours, reference):
        for key in set(b) - {"split"}:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a, b)
    ours, reference = _checkpoint(run, 8), _checkpoint(single, 8)
    assert jax.tree.structure(ours) == jax.tree.structure(reference)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    logs = [(tmp_path / f"p{i}.log").read_text() for i in range(2)]
    assert "[process 0/2] step 8/8 train" in logs[0] and "step 8/8" not in logs[1]  # process 0 alone logs
    assert sorted(os.listdir(run)) == ["checkpoints", "config.json", "metrics.jsonl", "tensorboard",
                                       "training_curve.png"]


PRUNE_TRAIN = ["prune", "train", "--config", "experiments/configs/prune_digits.py", "--config.image_size=16",
               "--config.model=user_models:train_by_default", "--config.width=1.0", "--config.batch_size=16",
               "--config.num_steps=20", "--config.log_every=5", "--config.pruning.calibration_batches=1",
               "--config.pruning.gcn_features=8", "--config.pruning.generator_hidden=4",
               "--config.pruning.report_widths=(0.5, 1.0)"]
PRUNE_SEARCH = ["prune", "search", "--method", "evolution", "--budget", "flops=0.5", "--config",
                "experiments/configs/prune_search_digits.py"]


def test_prune_train_and_search_on_two_processes_equal_one_process(tmp_path):
    """The PruningNet's training and the evolution search that reads it, as two jobs of two
    processes and as one process with two devices: same losses, accuracies by width and
    best configuration."""
    for processes in (1, 2):
        logs = tmp_path / f"logs{processes}"
        logs.mkdir()
        run = tmp_path / f"run{processes}"
        _wait(_job(PRUNE_TRAIN, run, processes, logs))
        _wait(_job(PRUNE_SEARCH, run, processes, logs))
    reports = [json.loads((tmp_path / f"run{p}" / "report.json").read_text()) for p in (1, 2)]
    for width, accuracy in reports[0]["accuracy_by_width"].items():
        assert reports[1]["accuracy_by_width"][width] == pytest.approx(accuracy, abs=1e-6)
    for a, b in zip(_metrics(tmp_path / "run2"), _metrics(tmp_path / "run1")):
        assert a["step"] == b["step"] and a.get("loss") == pytest.approx(b.get("loss"), rel=1e-5)
    best = [json.loads((tmp_path / f"run{p}" / "search" / "evolution" / "best.json").read_text()) for p in (1, 2)]
    assert best[1]["groups"] == best[0]["groups"] and best[1]["val_accuracy"] == pytest.approx(best[0]["val_accuracy"])


REPNAS = ["tests/tiny_repnas_cli.py", "repnas", "--config", "experiments/configs/repnas_digits.py",
          "--config.model=tiny", "--config.num_epochs=0", "--config.num_steps=8", "--config.batch_size=16",
          "--config.log_every=1", "--config.warmup_steps=2", "--config.repnas.random_epochs=0.03",
          "--config.repnas.search_epochs=0.045"]  # 2 random steps, 3 search steps, 3 fixed


def test_repnas_on_two_processes_equals_one_process(tmp_path):
    """The whole RepNAS job (random phase, search, fix, fixed training, fusion, report) on
    the tests' tiny backbone: same losses, genotype, report and deploy weights."""
    import orbax.checkpoint as ocp
    for processes in (1, 2):
        logs = tmp_path / f"logs{processes}"
        logs.mkdir()
        _wait(_job(REPNAS, tmp_path / f"run{processes}", processes, logs))
    one, two = tmp_path / "run1", tmp_path / "run2"
    genotypes = [json.loads((run / "genotype.json").read_text()) for run in (one, two)]
    for a, b in zip(genotypes[1]["layers"], genotypes[0]["layers"]):
        assert a["kept"] == b["kept"] and a["alphas"] == pytest.approx(b["alphas"], rel=1e-5, abs=1e-6)
    reports = [json.loads((run / "report.json").read_text()) for run in (one, two)]
    for key, value in reports[0].items():
        if isinstance(value, float) and not key.endswith("_s"):  # not the wall-clock seconds
            assert reports[1][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for a, b in zip(_metrics(two), _metrics(one)):
        assert a["step"] == b["step"] and a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    with ocp.StandardCheckpointer() as checkpointer:
        deploys = [checkpointer.restore(run / "deploy") for run in (one, two)]
    for a, b in zip(jax.tree.leaves(deploys[1]), jax.tree.leaves(deploys[0])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_job_needs_all_three_flags(capsys):
    from nas_jax.cli import main
    assert main(["train", "--config", "experiments/configs/train_digits.py", "--workdir", "/nonexistent",
                 "--num_processes=2"]) == 2
    assert "missing: --coordinator_address, --process_id" in capsys.readouterr().err


def _as_process(monkeypatch, rank, count):
    monkeypatch.setattr(jax, "process_index", lambda: rank)
    monkeypatch.setattr(jax, "process_count", lambda: count)


@pytest.mark.parametrize("count", [2, 4])
def test_each_process_reads_its_slice_of_every_global_batch(monkeypatch, count):
    """Digits: the processes' training batches concatenated are the one-process batch
    (augmentation included), so no two see the same example and together they see the
    epoch; evaluation batches cover every example once."""
    single = create_pipeline("digits", "train", augment=True).train_batches(16, seed=3)
    expected = [next(single) for _ in range(3)]
    parts = []
    for rank in range(count):
        _as_process(monkeypatch, rank, count)
        it = create_pipeline("digits", "train", augment=True).train_batches(16, seed=3)
        parts.append([next(it) for _ in range(3)])
    for k in range(3):
        for key in ("image", "label"):
            np.testing.assert_array_equal(np.concatenate([p[k][key] for p in parts]), expected[k][key])
    labels_seen = []
    for rank in range(count):
        _as_process(monkeypatch, rank, count)
        batches = list(create_pipeline("digits", "validation").eval_batches(32))
        labels_seen.append(sum(b["mask"].sum() for b in batches))
        assert len(batches) == 12  # ceil(359 / 32): the same number on every process
    assert sum(labels_seen) == 359


def test_tfds_evaluation_covers_every_example_once_on_any_number_of_processes(monkeypatch):
    with tfds.testing.mock_data(num_examples=23):
        reference = list(create_pipeline("cifar10", "test", data_dir="/nonexistent").eval_batches(8))
        for count in (2, 4):
            parts = []
            for rank in range(count):
                _as_process(monkeypatch, rank, count)
                parts.append(list(create_pipeline("cifar10", "test", data_dir="/nonexistent").eval_batches(8)))
            assert {len(p) for p in parts} == {len(reference)}
            for k, batch in enumerate(reference):
                real = batch["mask"] > 0
                joined = {key: np.concatenate([p[k][key] for p in parts]) for key in ("image", "label", "mask")}
                np.testing.assert_array_equal(joined["mask"], batch["mask"])
                np.testing.assert_array_equal(joined["image"][real], batch["image"][real])
                np.testing.assert_array_equal(joined["label"][real], batch["label"][real])
