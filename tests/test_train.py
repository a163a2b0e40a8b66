"""The training loop: sharded = one-device step, kill (SIGKILL / SIGTERM) and resume gives
the uninterrupted losses, a run in two segments, the Task extension points, the optimiser's decay mask, and the
train -> eval -> fuse command line on a zoo model with its artefacts."""
import json
import os
import signal
import subprocess
import sys
import time

import flax.linen as nn
import jax
import numpy as np
import pytest

from helpers import train_losses
from nas_jax.data import create_pipeline
from nas_jax.train import (ClassificationTask, TrainState, create_mesh, create_optimizer, create_train_state,
                           default_config, jit_train_step, shard_batch, train, train_step_fn)
from nas_jax.train.run import Run
from nas_jax.train.metrics import read_metrics
from nas_jax.train.optim import weight_decay_mask

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_STEPS = 8


class ConvBNPoolDense(nn.Module):
    """conv-BN-ReLU, global pool, dense: the step machinery at a compile cost of ~1 s."""
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(8, (3, 3), strides=(2, 2), use_bias=False)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


class SlowTask(ClassificationTask):
    """Sleeps at each logging point (host side; every step with ``log_every=1``), so a test
    can kill the run mid-way; appends the number of steps done to the file ``$STEP_LOG``
    when that is set."""

    def on_log(self, state, step, metrics):
        if os.environ.get("STEP_LOG"):
            with open(os.environ["STEP_LOG"], "a") as f:
                f.write(f"{step}\n")
        time.sleep(float(os.environ.get("STEP_SLEEP", "0")))


def tiny_config(**overrides):
    c = default_config()
    c.num_steps, c.batch_size, c.eval_batch_size = TOTAL_STEPS, 16, 400
    c.log_every, c.checkpoint_every, c.learning_rate, c.warmup_steps = 1, 2, 0.05, 2
    c.grad_clip_norm, c.label_smoothing = 5.0, 0.1
    c.update(overrides)
    return c


def test_sharded_step_equals_one_device_step():
    config = tiny_config()
    task = ClassificationTask(ConvBNPoolDense())
    tx, lr = create_optimizer(config, 10)
    batches = create_pipeline("digits", "train").train_batches(16, 0)
    host = [next(batches) for _ in range(2)]
    results = []
    for devices in (jax.devices(), jax.devices()[:1]):
        mesh = create_mesh(devices)
        state = create_train_state(task, tx, 0, host[0], mesh)
        step = jit_train_step(train_step_fn(task, tx, lr), mesh)
        losses = []
        for batch in host:
            state, metrics = step(state, shard_batch(batch, mesh), jax.random.PRNGKey(0))
            losses.append(float(metrics["loss"]))
        results.append((losses, jax.device_get(state)))
    assert len(jax.devices()) == 8
    (l8, s8), (l1, s1) = results
    np.testing.assert_allclose(l8, l1, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), s8, s1)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("full"))
    train(Run(tiny_config(), workdir), SlowTask(ConvBNPoolDense(), 0.1), progress_bar=False)
    return train_losses(workdir)


def test_stop_and_resume_gives_the_same_losses(tmp_path, uninterrupted):
    workdir = str(tmp_path)
    train(Run(tiny_config(), workdir), SlowTask(ConvBNPoolDense(), 0.1), stop_at_step=5, progress_bar=False)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
    state = train(Run(tiny_config(), workdir), SlowTask(ConvBNPoolDense(), 0.1), progress_bar=False)
    assert int(state.step) == TOTAL_STEPS
    resumed = train_losses(workdir)
    assert sorted(resumed) == list(range(1, TOTAL_STEPS + 1))
    np.testing.assert_allclose([resumed[s] for s in sorted(resumed)],
                               [uninterrupted[s] for s in sorted(resumed)], rtol=1e-6)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_process_resumes_with_the_same_losses(tmp_path, uninterrupted, sig):
    workdir = str(tmp_path / "run")
    step_log = str(tmp_path / "steps_done.txt")
    env = dict(os.environ, STEP_SLEEP="0.3", STEP_LOG=step_log, JAX_DEFAULT_MATMUL_PRECISION="highest")
    proc = subprocess.Popen([sys.executable, __file__, workdir], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint_4 = os.path.join(workdir, "checkpoints", "4")
    deadline = time.time() + 120
    while not os.path.isdir(checkpoint_4) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    assert 4 in steps and steps[-1] < TOTAL_STEPS
    if sig == signal.SIGTERM:  # the step in progress when the signal came is the last one done and saved
        with open(step_log) as f:
            last_done = int(f.read().split()[-1])
        assert proc.returncode == 0 and steps[-1] == last_done, "SIGTERM saves after the step in progress"
    train(Run(tiny_config(), workdir), SlowTask(ConvBNPoolDense(), 0.1), progress_bar=False)
    resumed = train_losses(workdir)
    np.testing.assert_allclose([resumed[s] for s in range(1, TOTAL_STEPS + 1)],
                               [uninterrupted[s] for s in range(1, TOTAL_STEPS + 1)], rtol=1e-6)


class AlphaTask(ClassificationTask):
    """Trains ``extra['alpha']`` by its own SGD (lr 0.1) on ``0.5 * |alpha - 1|^2``, counts
    its steps and sums the uniform numbers drawn from the loss's key; records ``on_log``."""
    trains_extra = True

    def __init__(self):
        super().__init__(ConvBNPoolDense())
        self.logged = []

    def init(self, rng, batch):
        extra = {"alpha": jax.numpy.zeros(3), "count": jax.numpy.int32(0), "draws": jax.numpy.zeros(())}
        return {**super().init(rng, batch), "extra": extra}

    def loss(self, params, extra, batch_stats, batch, rng, train):
        loss, out = super().loss(params, extra, batch_stats, batch, rng, train)
        return loss + 0.5 * ((extra["alpha"] - 1.0) ** 2).sum(), out

    def update_extra(self, extra, grads, step, rng):
        return {"alpha": extra["alpha"] - 0.1 * grads["alpha"], "count": extra["count"] + 1,
                "draws": extra["draws"] + jax.random.uniform(rng)}

    def on_log(self, state, step, metrics):
        self.logged.append((step, sorted(metrics)))


def test_task_extension_points(tmp_path):
    task = AlphaTask()
    config = tiny_config(num_steps=4, log_every=2)
    state = train(Run(config, str(tmp_path)), task, progress_bar=False)
    assert isinstance(state, TrainState)
    np.testing.assert_allclose(state.extra["alpha"], np.full(3, 1 - 0.9 ** 4), rtol=1e-6)
    assert int(state.extra["count"]) == 4
    # update_extra sees the step's key, fold_in(PRNGKey(seed), step)
    draws = sum(jax.random.uniform(jax.random.fold_in(jax.random.PRNGKey(config.seed), s)) for s in range(4))
    np.testing.assert_allclose(state.extra["draws"], draws, rtol=1e-6)
    assert [s for s, _ in task.logged] == [2, 4]
    assert task.logged[0][1] == ["accuracy", "grad_norm", "learning_rate", "loss"]


def test_a_run_in_two_segments_equals_one_run(tmp_path, uninterrupted):
    """The first segment stops at ``until`` with a checkpoint; the second, in its own
    checkpoint directory, starts from it (``start_from``) and gives the one-run losses."""
    workdir = str(tmp_path)
    first = train(Run(tiny_config(), workdir), SlowTask(ConvBNPoolDense(), 0.1), until=3, checkpoint_dir="first",
                  progress_bar=False)
    assert int(first.step) == 3 and sorted(os.listdir(os.path.join(workdir, "first"))) == ["2", "3"]
    again = train(Run(tiny_config(), workdir), SlowTask(ConvBNPoolDense(), 0.1), until=3, checkpoint_dir="first",
                  progress_bar=False)  # done already: restores, trains nothing
    assert int(again.step) == 3 and len(train_losses(workdir)) == 3
    started = []

    def start_from():
        started.append(True)
        return Run(tiny_config(), workdir).latest_checkpoint(SlowTask(ConvBNPoolDense(), 0.1), "first")

    train(Run(tiny_config(), workdir), SlowTask(ConvBNPoolDense(), 0.1), start_from=start_from, progress_bar=False)
    assert started == [True] and sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["4", "6", "8"]
    resumed = train_losses(workdir)
    assert sorted(resumed) == list(range(1, TOTAL_STEPS + 1))
    np.testing.assert_allclose([resumed[s] for s in sorted(resumed)],
                               [uninterrupted[s] for s in sorted(resumed)], rtol=1e-6)


def test_weight_decay_skips_batchnorm_and_biases():
    params = jax.eval_shape(ConvBNPoolDense().init, jax.random.PRNGKey(0), np.zeros((1, 8, 8, 3)))["params"]
    mask = weight_decay_mask(params)
    assert mask["Conv_0"]["kernel"] and mask["Dense_0"]["kernel"]
    assert not mask["Dense_0"]["bias"] and not mask["BatchNorm_0"]["scale"] and not mask["BatchNorm_0"]["bias"]


def test_cli_train_eval_fuse_on_a_zoo_model(tmp_path, capsys):
    from nas_jax.cli import main

    workdir = str(tmp_path)
    config = os.path.join(REPO, "experiments", "configs", "train_digits.py")
    assert main(["train", "--config", config, "--workdir", workdir, "--config.width=0.125",
                 "--config.num_steps=2", "--config.log_every=1", "--config.eval_batch_size=360"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["step"] == 2 and trained["count"] == 359
    assert main(["eval", "--workdir", workdir]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["accuracy"] == pytest.approx(trained["accuracy"])
    assert main(["fuse", "--workdir", workdir]) == 0
    fused = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert fused["max_abs_logit_diff"] < 1e-3 and fused["accuracy_deploy"] == fused["accuracy_trained"]
    assert os.path.isdir(os.path.join(workdir, "deploy"))
    assert os.path.getsize(os.path.join(workdir, "training_curve.png")) > 0
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(workdir, "tensorboard")))
    assert [r["step"] for r in read_metrics(workdir) if r["split"] == "train"] == [1, 2]


if __name__ == "__main__":  # the process test_killed_process_resumes_* kills
    train(Run(tiny_config(), sys.argv[1]), SlowTask(ConvBNPoolDense(), 0.1), progress_bar=False)
