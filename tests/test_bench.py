"""``nas-jax bench``: one JSON object with the figures the GPU script collects."""
import json

import pytest

from nas_jax.cli import main
from nas_jax.train.bench import benchmark


def test_bench_infer_json(capsys):
    assert main(["bench", "infer", "--model", "resnet18", "--block", "deploy", "--batch", "8", "--res", "32",
                 "--steps", "2", "--width", "0.125", "--num-classes", "10", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images_per_s"] > 0 and result["compile_s"] > 0 and result["peak_mem_mb"] > 0
    assert result["temp_mb"] > 0  # XLA:CPU reports its buffer assignment
    assert (result["mode"], result["block"], result["batch"], result["devices"]) == ("infer", "deploy", 8, 8)


@pytest.mark.parametrize("kwargs, message", [({"mode": "fit"}, "mode must be"), ({"dtype": "float16"}, "dtype"),
                                             ({"steps": 0}, "steps >= 1")])
def test_bench_bad_settings(kwargs, message):
    args = {"mode": "train", "model": "resnet18", **kwargs}
    with pytest.raises(ValueError, match=message):
        benchmark(**args)
