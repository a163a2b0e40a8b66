"""The online DBB (``block='orepa'``): its collapsed one-conv forward equals the four
scaled linear branches computed one by one (float64, train and eval mode), it fuses
exactly, and it starts from a plain network as the same function."""
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st

from helpers import as_float64, random_variables, rel_l2
from nas_jax import create_model, fuse_params
from nas_jax.rep.from_plain import branches_from_plain
from nas_jax.rep.online import OnlineDBB
from nas_jax.rep.transforms import BN_EPS
from reference import conv2d
from test_blocks import dbb_configs

SETTINGS = settings(max_examples=12, deadline=None)


def avg_pool(x, size, strides, padding):
    """Zero-padded KxK average pool counting the padding, in numpy float64."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    h = (x.shape[1] - size) // strides + 1
    w = (x.shape[2] - size) // strides + 1
    return np.stack([np.stack([x[:, i * strides:i * strides + size, j * strides:j * strides + size].mean(axis=(1, 2))
                               for j in range(w)], 1) for i in range(h)], 1)


def grouped_identity_1x1(channels, groups):
    per_group = channels // groups
    kernel = np.zeros((1, 1, per_group, channels))
    kernel[0, 0, np.arange(channels) % per_group, np.arange(channels)] = 1.0
    return kernel


def branches_reference(block, params, x):
    """The pre-BatchNorm output: each branch run on the feature map, scaled, summed."""
    k, s, g = block.kernel_size, block.strides, block.groups
    p = k // 2
    origin = params["conv"]
    y = conv2d(x, origin["kernel"], s, p, g) * np.asarray(origin["scale"])
    if "orepa_1x1" in params:
        y += conv2d(x, params["orepa_1x1"]["kernel"], s, 0, g) * np.asarray(params["orepa_1x1"]["scale"])
    avg = params["orepa_avg"]
    z = conv2d(x, avg["kernel"], 1, 0, g) if "kernel" in avg else np.asarray(x, np.float64)
    y += avg_pool(z, k, s, p) * np.asarray(avg["scale"])
    branch = params["orepa_1x1_kxk"]
    first = (np.asarray(branch["idconv1"]) + grouped_identity_1x1(x.shape[-1], g) if "idconv1" in branch
             else branch["conv1"])
    y += conv2d(conv2d(x, first, 1, 0, g), branch["conv2"], s, p, g) * np.asarray(branch["scale"])
    return y


def batch_norm(y, bn, mean, var):
    return (y - mean) / np.sqrt(var + BN_EPS) * np.asarray(bn["scale"]) + np.asarray(bn["bias"])


@SETTINGS
@given(dbb_configs(), st.integers(0, 2**31 - 1), st.integers(7, 12))
def test_collapsed_conv_equals_the_branches_and_fuses_exactly(cfg, seed, size):
    cin = cfg.pop("cin")
    block = OnlineDBB(**cfg)
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(seed % 1000), (2, size, size, cin), jnp.float64)
        v = as_float64(random_variables(block, x, seed))
        v["batch_stats"]["bn"]["var"] = jnp.abs(v["batch_stats"]["bn"]["var"]) + 0.5
        pre_bn = branches_reference(block, v["params"], np.asarray(x))
        bn = v["params"]["bn"]
        expected = batch_norm(pre_bn, bn, np.asarray(v["batch_stats"]["bn"]["mean"]),
                              np.asarray(v["batch_stats"]["bn"]["var"]))
        y = block.apply(v, x)
        assert y.dtype == jnp.float64 and rel_l2(y, expected) < 1e-12
        # train mode: the batch's statistics (biased variance), the same branches
        y_train, _ = block.apply(v, x, train=True, mutable=["batch_stats"])
        axes = (0, 1, 2)
        assert rel_l2(y_train, batch_norm(pre_bn, bn, pre_bn.mean(axes), pre_bn.var(axes))) < 1e-12
        kernel, bias = block.fuse(v, cin)
        fused = conv2d(x, kernel, block.strides, kernel.shape[0] // 2, block.groups, bias=bias)
        assert rel_l2(fused, expected) < 1e-12


def test_a_plain_network_carried_over_computes_the_same_function():
    plain = create_model("mobilenet_v1", block="plain", num_classes=5, width=0.25)
    online = create_model("mobilenet_v1", block="orepa", num_classes=5, width=0.25)
    x = jax.random.normal(jax.random.key(2), (2, 32, 32, 3))
    plain_v = random_variables(plain, x, seed=4, scale=0.2)
    plain_v["batch_stats"] = jax.tree.map(jnp.abs, plain_v["batch_stats"])
    v = branches_from_plain(online, plain_v, input_shape=x.shape)
    with jax.default_matmul_precision("highest"):
        assert rel_l2(jax.jit(online.apply)(v, x), jax.jit(plain.apply)(plain_v, x)) < 1e-5
        grads = jax.grad(lambda p: online.apply({**v, "params": p}, x, train=True,
                                                mutable=["batch_stats"])[0].sum())(v["params"])
    # the other branches add nothing yet, but learn: their scales get gradients
    for branch in ("orepa_1x1", "orepa_avg", "orepa_1x1_kxk"):
        assert float(jnp.abs(grads["conv1"][branch]["scale"]).sum()) > 0
    deploy, deploy_v = fuse_params(online, v, input_shape=x.shape)
    assert rel_l2(jax.jit(deploy.apply)(deploy_v, x), jax.jit(plain.apply)(plain_v, x)) < 1e-5
