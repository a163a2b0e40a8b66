"""The contract a user's model must fit (``nas_jax.models.contract``): a model whose
``train`` defaults to True goes through every command, and each kind of misfit is refused
at the first command that builds the model, with a message that says how to adapt it."""
import json

import flax.linen as nn
import jax.numpy as jnp
import pytest

from nas_jax.cli import main
from nas_jax.models.contract import ModelContractError, check_model
from nas_jax.models.custom import CustomSpec

SIZE = 16
SHAPE = (2, SIZE, SIZE, 3)


def _bn(train, **kwargs):
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, **kwargs)


class NoTrainKeyword(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10)(nn.Conv(4, (3, 3))(x).mean((1, 2)))


class PositionalTrain(nn.Module):
    def __call__(self, x, train, /):
        return self.head(self.conv(x).mean((1, 2)))

    def setup(self):
        self.conv, self.head = nn.Conv(4, (3, 3)), nn.Dense(10)


class ReturnsTuple(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        features = nn.Conv(4, (3, 3))(x).mean((1, 2))
        return nn.Dense(10)(features), features


class ReturnsDict(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return {"logits": nn.Dense(10)(nn.Conv(4, (3, 3))(x).mean((1, 2)))}


class StatsElsewhere(nn.Module):
    """A hand-written BatchNorm keeping its running mean in a collection named 'stats'."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(4, (3, 3))(x)
        mean = self.variable("stats", "mean", jnp.zeros, (4,))
        if train:
            mean.value = x.mean((0, 1, 2))
        return nn.Dense(10)((x - mean.value).mean((1, 2)))


class NamedAxisBatchNorm(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = _bn(train, axis_name="batch")(nn.Conv(4, (3, 3))(x))
        return nn.Dense(10)(x.mean((1, 2)))


class EvalModeUpdates(nn.Module):
    """Ignores ``train``: its BatchNorm always uses (and updates) the batch's statistics."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = _bn(True)(nn.Conv(4, (3, 3))(x))
        return nn.Dense(10)(x.mean((1, 2)))


class WrongClasses(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(1000)(nn.Conv(4, (3, 3))(x).mean((1, 2)))


@pytest.mark.parametrize("module, message", [
    (NoTrainKeyword(), r"(?s)has no `train` keyword; wrap it .*class Adapted\(nn.Module\)"),
    (PositionalTrain(), r"(?s)`train` is positional-only .* passes it by keyword: wrap it.*self.net\(x, train\)"),
    (ReturnsTuple(), r"(?s)returns a tuple \(\(\(2, 10\), \(2, 4\)\)\), not one array of logits .*"
                     r"return self.net\(x, train=train\)\[0\]"),
    (ReturnsDict(), r"returns a dict \(\{'logits': \(2, 10\)\}\), not one array"),
    (StatsElsewhere(), r"collection\(s\) \['stats'\]; nas_jax .* self.variable\('batch_stats'"),
    (NamedAxisBatchNorm(), r"unbound axis name: batch.*build the BatchNorm without axis_name"),
    (EvalModeUpdates(), r"train=False\) tries to update its batch_stats .*use_running_average=not train"),
    (WrongClasses(), r"returns shape \(2, 1000\) for 2 images, not logits \[2, 10\]"),
])
def test_a_model_that_does_not_fit_is_refused_with_the_fix(module, message):
    with pytest.raises(ModelContractError, match=message):
        check_model(module, SHAPE, 10)


def test_a_user_model_is_checked_when_first_built(tmp_path):
    (tmp_path / "bad_model.py").write_text(
        "import flax.linen as nn\n"
        "class Net(nn.Module):\n"
        "    num_classes: int\n"
        "    @nn.compact\n"
        "    def __call__(self, x):\n"
        "        return nn.Dense(self.num_classes)(x.mean((1, 2)))\n"
        "def net(num_classes):\n"
        "    return Net(num_classes)\n")
    target = f"{tmp_path / 'bad_model.py'}:net"
    with pytest.raises(ModelContractError, match="nas_jax calls models as model"):
        CustomSpec(target, 10, SIZE).model()
    code = main(["prune", "train", "--config", "experiments/configs/prune_digits.py", "--workdir",
                 str(tmp_path / "run"), f"--config.model={target}", "--config.width=1.0", "--config.num_steps=1"])
    assert code == 2 and not (tmp_path / "run" / "checkpoints").exists()


def test_a_model_whose_train_defaults_to_true_runs_through_every_command(tmp_path, capsys):
    """On a model called as ``model(x, train=True)`` unless told otherwise, every command
    that applies it passes ``train=`` itself (``prune export`` once relied on the default
    and crashed updating ``batch_stats`` in eval mode)."""
    run, out, ft = tmp_path / "run", tmp_path / "export", tmp_path / "ft"
    model = ["--config.model=user_models:train_by_default", "--config.image_size=16", "--config.width=1.0",
             "--config.batch_size=16"]
    assert main(["prune", "graph", "--model", "user_models:train_by_default", "--image-size", "16", "--width", "1.0",
                 "--out", str(tmp_path / "graph.png")]) == 0
    assert main(["prune", "train", "--config", "experiments/configs/prune_digits.py", "--workdir", str(run),
                 *model, "--config.num_steps=2", "--config.pruning.calibration_batches=1",
                 "--config.pruning.gcn_features=8", "--config.pruning.generator_hidden=4",
                 "--config.pruning.report_widths=(0.5, 1.0)"]) == 0
    assert main(["prune", "search", "--workdir", str(run), "--method", "uniform", "--budget", "flops=0.5"]) == 0
    best = next((run / "search").rglob("best.json"))
    capsys.readouterr()
    assert main(["prune", "export", "--workdir", str(run), "--widths", str(best), "--out", str(out)]) == 0
    exported = json.loads((out / "report.json").read_text())
    assert exported["max_abs_diff_vs_masked"] < 1e-4 and exported["flops_ratio"] <= 0.5
    assert main(["train", "--config", "experiments/configs/train_digits.py", "--workdir", str(ft),
                 f"--config.init_from={out}", "--config.num_steps=2", "--config.batch_size=16"]) == 0
    capsys.readouterr()
    assert main(["eval", "--workdir", str(ft)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["count"] > 0
    assert main(["fuse", "--workdir", str(ft)]) == 0
    fused = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert fused["max_abs_logit_diff"] <= 1e-4 * max(1.0, fused["max_abs_logit"])
