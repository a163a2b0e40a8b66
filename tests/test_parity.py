"""``nas-jax parity``: every golden file passes; bad, foreign and tampered files fail with a
reason, never a traceback."""
import json

import numpy as np
import pytest

from nas_jax import cli
from nas_jax.interop.parity import TOLERANCE, check_golden_file


@pytest.fixture(scope="module")
def golden_files(parity_dir):
    files = sorted(parity_dir.glob("*.npz"))
    assert files, f"no golden files in {parity_dir}"
    return files


@pytest.fixture(scope="module")
def golden_results(golden_files):
    """One check per golden file; it also compiles the programs that later checks reuse."""
    return {path: check_golden_file(path) for path in golden_files}


def run_cli(capsys, *files):
    status = cli.main(["parity", *map(str, files)])
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.out + captured.err


def rewrite(source, target, change):
    """Copies golden file ``source`` to ``target`` after ``change(arrays, meta)`` edits it in place."""
    with np.load(source) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(str(arrays["meta"]))
    change(arrays, meta)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(target, **arrays)
    return target


def test_every_golden_file_passes(golden_results):
    failures = {path.name: result.reason for path, result in golden_results.items() if not result.passed}
    assert not failures
    for path, result in golden_results.items():
        with np.load(path) as archive:
            assert result.kind == json.loads(str(archive["meta"]))["kind"]
            has_deploy = any(k.startswith("deploy/") for k in archive.files)
        assert result.eval_error < TOLERANCE and result.fused_error < TOLERANCE
        assert (result.kernel_error is not None) == has_deploy
        assert not has_deploy or result.kernel_error < TOLERANCE
    assert {r.kind for r in golden_results.values()} == {"dbb_block", "dbb_model", "repnas_mixedop"}


def test_cli_prints_a_row_per_file_and_the_count(golden_files, golden_results, capsys):
    status, lines, output = run_cli(capsys, *golden_files)
    assert lines[-1] == f"{len(golden_files)} passed, 0 failed"
    assert status == 0
    rows = lines[1:-1]
    assert len(rows) == len(golden_files)
    for path, row in zip(golden_files, rows):
        assert row.startswith(str(path)) and row.endswith("PASS")


@pytest.fixture
def bad_files(tmp_path, parity_dir):
    """``{path: a fragment of the reason it must fail with}``."""
    good = (parity_dir / "dbb_k3_s1_g1.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.npz").write_bytes(b"\x00not a zip archive" * 10)
    np.savez(tmp_path / "foreign.npz", weights=np.ones(3))
    np.savez(tmp_path / "unknown_kind.npz", meta=np.array(json.dumps({"kind": "vit_block", "config": {}})))
    np.savez(tmp_path / "bad_meta.npz", meta=np.array("{not json"))
    np.save(tmp_path / "array.npy", np.ones(3))
    return {tmp_path / "truncated.npz": "unreadable", tmp_path / "garbage.npz": "unreadable",
            tmp_path / "foreign.npz": "no 'meta' key", tmp_path / "unknown_kind.npz": "unknown kind 'vit_block'",
            tmp_path / "bad_meta.npz": "not JSON", tmp_path / "array.npy": "not an .npz archive",
            tmp_path / "absent.npz": "unreadable"}


def test_bad_files_fail_with_a_reason(bad_files):
    for path, fragment in bad_files.items():
        result = check_golden_file(path)
        assert not result.passed
        assert fragment in result.reason, (path.name, result.reason)


def test_cli_reports_bad_files_as_failed_rows(bad_files, parity_dir, golden_results, capsys):
    files = [parity_dir / "dbb_k3_s1_g1.npz", *bad_files]
    status, lines, output = run_cli(capsys, *files)
    assert status == 1
    assert lines[-1] == f"1 passed, {len(bad_files)} failed"
    assert "Traceback" not in output
    failed_rows = [line for line in lines if line.endswith("FAIL")]
    assert [row.split()[0] for row in failed_rows] == [str(p) for p in bad_files]


def _scale(key, factor):
    def change(arrays, meta):
        arrays[key] = arrays[key] * np.float32(factor)
    return change


def _drop(key):
    def change(arrays, meta):
        del arrays[key]
    return change


def _set_config(key, value):
    def change(arrays, meta):
        meta["config"][key] = value
    return change


@pytest.mark.parametrize("source, change, fragment", [
    ("dbb_k3_s1_g1.npz", _scale("y_eval", 1 + 1e-4), "eval error"),
    ("dbb_k3_s1_g1.npz", _scale("y_deploy", 1 - 1e-4), "fused error"),
    ("dbb_k3_s1_g1.npz", _scale("deploy/dbb_reparam.bias", 1 + 1e-4), "kernel error"),
    ("dbb_k3_s1_g1.npz", _drop("sd/dbb_1x1.bn.running_var"), "missing: batch_stats/dbb_1x1/bn/var"),
    ("dbb_k3_s1_g1.npz", _set_config("internal_channels_1x1_3x3", 8), "misshaped: dbb_1x1_kxk"),
    ("dbb_k3_s1_g1.npz", _set_config("dilation", 2), "dilation 2 is not supported"),
    ("repnas_s1_identity.npz", _set_config("mask", [1, 1, 1, 1, 0, 0]), "eval error"),
    ("repnas_s1_identity.npz", _set_config("primitives", ["Conv_3x3"] * 6), "not the official"),
    ("dbb_mobilenet_w025.npz", _set_config("channels", [8] * 27), "disagree with the tensors' widths"),
    ("dbb_resnet18_w025.npz", _set_config("block", "Bottleneck"), "missing: params/stage1_0/conv3/"),
])
def test_tampered_golden_files_fail(source, change, fragment, parity_dir, tmp_path, golden_results):
    result = check_golden_file(rewrite(parity_dir / source, tmp_path / source, change))
    assert not result.passed
    assert fragment in result.reason, result.reason


def test_repnas_mask_falls_back_to_the_mask_key(parity_dir, tmp_path, golden_results):
    def without_config_mask(arrays, meta):
        del meta["config"]["mask"]

    result = check_golden_file(rewrite(parity_dir / "repnas_s1_identity.npz", tmp_path / "a.npz",
                                       without_config_mask))
    assert result.passed, result.reason

    def without_any_mask(arrays, meta):
        without_config_mask(arrays, meta)
        del arrays["mask"]

    result = check_golden_file(rewrite(parity_dir / "repnas_s1_identity.npz", tmp_path / "b.npz", without_any_mask))
    assert not result.passed and "needs a mask" in result.reason


@pytest.mark.parametrize("arch", ["MobileNetV1", "ResNet"])
def test_golden_file_at_a_non_uniform_channel_list_is_accepted(arch, tmp_path):
    """A ``dbb_model`` file in the official format at per-layer widths no uniform width gives
    (as the official code builds from an edited channel list). No such file from the
    official code exists here, so its outputs come from the unfused JAX model: this checks
    that the widths are read off the tensors and the file loads, fuses and matches."""
    import jax

    from helpers import randomize
    from nas_jax.interop import flax_to_torch
    from nas_jax.models import MobileNetV1, ResNet
    from nas_jax.models.mobilenet import MOBILENET_V1_CHANNELS

    if arch == "MobileNetV1":
        widths = (("conv1", 6), ("stem_0/pointwise", 12), ("stem_3/pointwise", 20), ("stem_12/pointwise", 200))
        model = MobileNetV1(num_classes=10, width=0.25, block="dbb", widths=widths)
        config = {"arch": "MobileNetV1", "num_classes": 10}
    else:
        widths = (("stage1_0/conv1", 5), ("stage3_1/conv1", 23), ("stage4_0/conv1", 50))
        model = ResNet(num_classes=10, width=0.25, block="dbb", widths=widths)
        config = {"arch": "ResNet-18", "block": "BasicBlock", "num_blocks": [2, 2, 2, 2], "num_classes": 10,
                  "width_multiplier": 0.25}
    x = np.asarray(jax.random.normal(jax.random.key(0), (2, 32, 32, 3)))
    variables = randomize(jax.eval_shape(model.init, jax.random.key(0), x), 4)
    if arch == "MobileNetV1":
        params = variables["params"]

        def width(layer):  # a 3x3 layer is a DBB (dbb_origin), a 1x1 stays conv-BN
            return layer.get("dbb_origin", layer)["conv"]["kernel"].shape[-1]
        config["channels"] = [width(params["conv1"])] + [
            width(params[f"stem_{i}"][layer]) for i in range(13) for layer in ("depthwise", "pointwise")]
        assert len({c / u for c, u in zip(config["channels"], MOBILENET_V1_CHANNELS)}) > 1  # no one width
    with jax.default_matmul_precision("highest"):
        y = np.asarray(model.apply(variables, x))
    arrays = {"meta": json.dumps({"kind": "dbb_model", "config": config}), "x": x.transpose(0, 3, 1, 2), "y_eval": y,
              **{f"sd/{k}": v for k, v in flax_to_torch(variables).items()}}
    np.savez(tmp_path / "golden.npz", **arrays)
    result = check_golden_file(tmp_path / "golden.npz")
    assert result.passed, result.reason
