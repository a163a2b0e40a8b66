"""The interop commands end to end on digits: a torchvision checkpoint imported as a run,
evaluated, fused, exported to ONNX (checked with onnxruntime) and back to the torchvision
class (strict load, same outputs); bad checkpoints and unfused exports get clear errors."""
import json

import pytest

from nas_jax.cli import main
from helpers import rel_l2
from torch_zoo import torch, torchvision


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    module = torchvision.models.resnet18(num_classes=10).eval()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(module.state_dict(), path)
    return path, module


def test_import_eval_fuse_and_export(tmp_path, capsys, weights):
    path, module = weights
    workdir = tmp_path / "run"
    assert main(["import", "torchvision", "resnet18", "--weights", str(path), "--workdir", str(workdir),
                 "--config.image_size=32"]) == 0
    imported = _last_json(capsys)
    assert imported["model"] == "resnet18" and imported["num_classes"] == 10
    assert main(["eval", "--workdir", str(workdir)]) == 0
    assert _last_json(capsys)["step"] == 0
    capsys.readouterr()
    assert main(["fuse", "--workdir", str(workdir)]) == 0
    fused = _last_json(capsys)
    assert fused["max_abs_logit_diff"] <= 1e-4 * max(1.0, fused["max_abs_logit"])
    assert main(["export", "onnx", "--workdir", str(workdir), "--output", str(tmp_path / "m.onnx")]) == 0
    assert _last_json(capsys)["relative_l2"] < 1e-5
    assert main(["export", "torchvision", "resnet18", "--workdir", str(workdir),
                 "--output", str(tmp_path / "back.pth")]) == 0
    capsys.readouterr()
    again = torchvision.models.resnet18(num_classes=10)
    again.load_state_dict(torch.load(tmp_path / "back.pth"), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert rel_l2(again.eval()(x).numpy(), module(x).numpy()) < 1e-5


def test_export_of_an_unfused_run_says_to_fuse(tmp_path, capsys, weights):
    path, _ = weights
    workdir = tmp_path / "run"
    assert main(["import", "torchvision", "resnet18", "--weights", str(path), "--workdir", str(workdir),
                 "--config.image_size=32"]) == 0
    capsys.readouterr()
    assert main(["export", "onnx", "--workdir", str(workdir), "--output", str(tmp_path / "m.onnx")]) == 2
    assert "nas-jax fuse" in capsys.readouterr().err


def test_bad_checkpoints_are_refused_with_the_reason(tmp_path, capsys, weights):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(weights[0].read_bytes()[:1000])
    assert main(["import", "torchvision", "resnet18", "--weights", str(corrupt), "--workdir", str(tmp_path / "a")]) == 2
    assert "cannot import" in capsys.readouterr().err
    other = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v2(num_classes=10).state_dict(), other)
    assert main(["import", "torchvision", "resnet18", "--weights", str(other), "--workdir", str(tmp_path / "b")]) == 2
    assert "belongs to no layer of resnet18" in capsys.readouterr().err
    wrong_classes = tmp_path / "r18_1000.pth"
    torch.save(torchvision.models.resnet18().state_dict(), wrong_classes)
    assert main(["import", "torchvision", "resnet18", "--weights", str(wrong_classes),
                 "--workdir", str(tmp_path / "c")]) == 2
    assert "1000 classes" in capsys.readouterr().err
    assert not (tmp_path / "c" / "network").exists()


def test_timm_repvgg_keeps_its_branches_through_import_and_fuses(tmp_path, capsys):
    """The train-time RepVGG (3x3, 1x1 and identity branches) is imported as RepNAS blocks
    with that branch mask, evaluated, fused into plain 3x3 convs and exported to ONNX."""
    from torch_zoo import timm

    torch.manual_seed(0)
    module = timm.create_model("repvgg_a0", num_classes=10).eval()
    path = tmp_path / "repvgg.pth"
    torch.save(module.state_dict(), path)
    workdir = tmp_path / "run"
    assert main(["import", "timm", "repvgg_a0", "--weights", str(path), "--workdir", str(workdir),
                 "--config.image_size=32"]) == 0
    capsys.readouterr()
    document = json.loads((workdir / "network" / "model.json").read_text())
    assert document["block"] == "repnas" and len(document["branch_mask"]) == 22
    assert main(["fuse", "--workdir", str(workdir)]) == 0
    fused = _last_json(capsys)
    assert fused["max_abs_logit_diff"] <= 1e-4 * max(1.0, fused["max_abs_logit"])
    assert main(["export", "onnx", "--workdir", str(workdir), "--output", str(tmp_path / "r.onnx")]) == 0
    assert _last_json(capsys)["relative_l2"] < 1e-5


def test_fine_tuning_with_branches_starts_from_the_imported_function(tmp_path, capsys, weights):
    """``--config.init_from=W/network --config.block=dbb``: the run's initial DBB network
    computes what the imported torchvision network computes."""
    import jax

    from nas_jax.train.config import default_config
    from nas_jax.train.run import classification_task_from_config

    path, module = weights
    workdir = tmp_path / "run"
    assert main(["import", "torchvision", "resnet18", "--weights", str(path), "--workdir", str(workdir),
                 "--config.image_size=32"]) == 0
    capsys.readouterr()
    config = default_config()
    config.init_from, config.block = str(workdir / "network"), "dbb"
    task = classification_task_from_config(config, 10)
    assert task.model.block == "dbb"
    x = torch.randn(2, 3, 32, 32)
    ours = jax.jit(task.model.apply)(task.initial_variables, x.numpy().transpose(0, 2, 3, 1))
    with torch.no_grad():
        assert rel_l2(ours, module(x).numpy()) < 1e-5
