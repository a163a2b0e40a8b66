"""Config files and ``--config.key=value`` overrides: good values apply, bad ones fail early."""
import os

import pytest

from nas_jax.cli import main
from nas_jax.train.config import ConfigError, apply_overrides, config_from_json, config_to_json, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [os.path.join(REPO, "experiments", "configs", f) for f in
           ("train_digits.py", "train_cifar10.py", "train_imagenet_resnet18.py")]


@pytest.mark.parametrize("path", CONFIGS)
def test_config_files_load_and_round_trip_through_json(path):
    config = load_config(path)
    assert config.model == "resnet18"
    assert config_from_json(config_to_json(config)).to_dict() == config.to_dict()


def test_overrides_parse_to_the_existing_type():
    config = load_config(CONFIGS[0])
    out = apply_overrides(config, ["--config.learning_rate=1", "--config.num_steps=7", "--config.block=dbb",
                                   "--config.nesterov=true", "augment=False"])
    assert out.learning_rate == 1.0 and isinstance(out.learning_rate, float)
    assert (out.num_steps, out.block, out.nesterov, out.augment) == (7, "dbb", True, False)
    assert config.block == "plain", "the input config is not modified"


@pytest.mark.parametrize("override, message", [
    ("--config.learing_rate=0.1", "unknown config key 'learing_rate'"),
    ("--config.num_steps=0.5", "expected a value of type int"),
    ("--config.learning_rate=fast", "expected a value of type float"),
    ("--config.nesterov=maybe", "expected a value of type bool"),
    ("--config.model.depth=3", "unknown config key 'model'"),
    ("--config.num_steps", "must look like --config.key=value"),
])
def test_bad_overrides_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(load_config(CONFIGS[0]), [override])


def test_cli_rejects_a_bad_override_before_anything_runs(tmp_path, capsys):
    workdir = tmp_path / "run"
    status = main(["train", "--config", CONFIGS[0], "--workdir", str(workdir), "--config.batchsize=3"])
    assert status == 2 and "unknown config key 'batchsize'" in capsys.readouterr().err
    assert not workdir.exists()


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.py"))


@pytest.mark.parametrize("command", [["eval"], ["fuse"], ["prune", "search", "--method", "uniform", "--budget",
                                                              "flops=0.5"]])
def test_a_command_on_a_directory_that_holds_no_run_says_so(tmp_path, capsys, command):
    """Every command's bad input is reported in one place (``nas_jax.cli.main``): one line on
    stderr and exit status 2, not a traceback."""
    assert main([*command, "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds no training run" in err and "Traceback" not in err
