"""ONNX export checked with onnxruntime: deploy (fused DBB, depthwise included) and pruned
networks; a network with branches left is refused."""
import jax
import jax.numpy as jnp
import pytest

from helpers import randomize
from nas_jax import create_model, fuse_params
from nas_jax.interop.onnx_export import export_onnx


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_fused_dbb_network_exports(tmp_path, name):
    x = jnp.zeros((1, 32, 32, 3))
    model = create_model(name, block="dbb", num_classes=10, width=0.25)
    variables = randomize(jax.eval_shape(model.init, jax.random.key(0), x), 1)
    with pytest.raises(ValueError, match="Fuse it first"):
        export_onnx(model, variables, tmp_path / "m.onnx", (2, 32, 32, 3))
    deploy_model, deploy_variables = fuse_params(model, variables, input_shape=x.shape)
    result = export_onnx(deploy_model, deploy_variables, tmp_path / "m.onnx", (3, 32, 32, 3))
    assert result["relative_l2"] < 1e-5


def test_pruned_plain_network_exports(tmp_path):
    """A plain conv-BN network at non-uniform widths (BatchNorm folded on the way)."""
    widths = (("stage1_0/conv1", 5), ("stage2_1/conv1", 7), ("stage4_0/conv1", 11))
    model = create_model("resnet18", num_classes=10, width=0.25, widths=widths)
    variables = randomize(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3))), 2)
    result = export_onnx(model, variables, tmp_path / "p.onnx", (2, 32, 32, 3))
    assert result["relative_l2"] < 1e-5
