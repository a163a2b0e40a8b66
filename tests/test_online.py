"""The online blocks (``block='orepa'``, ``'repnas_online'``): the collapsed one-conv forward
equals the scaled linear branches computed one by one (float64, train and eval mode),
each fuses exactly, and each starts from a plain network as the same function."""
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from helpers import as_float64, random_variables, rel_l2
from nas_jax import create_model, fuse_params
from nas_jax.rep.from_plain import branches_from_plain
from nas_jax.rep import online
from nas_jax.rep.blocks import ConvBN, DiverseBranchBlock, RepNASBlock
from nas_jax.rep.online import ONLINE_PRIMITIVES, OnlineDBB, OnlineRepNASBlock
from nas_jax.rep.transforms import BN_EPS
from nas_jax.train.bench import compiled_temp_mb
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


def check_collapsed_block(block, cin, seed, size, reference, branch_weights=None):
    """``block``'s forward (eval and train mode) equals ``reference(block, params, x)`` (the
    pre-BN output, NumPy float64) then BN, and its fused conv equals it (float64)."""
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(seed % 1000), (2, size, size, cin), jnp.float64)
        v = as_float64(random_variables(block, x, seed))
        v["batch_stats"]["bn"]["var"] = jnp.abs(v["batch_stats"]["bn"]["var"]) + 0.5
        extra = {} if branch_weights is None else {"branch_weights": {"w": jnp.asarray(branch_weights)}}
        pre_bn = reference(block, v["params"], np.asarray(x))
        bn = v["params"]["bn"]
        expected = batch_norm(pre_bn, bn, np.asarray(v["batch_stats"]["bn"]["mean"]),
                              np.asarray(v["batch_stats"]["bn"]["var"]))
        y = block.apply({**v, **extra}, x)
        assert y.dtype == jnp.float64 and rel_l2(y, expected) < 1e-12
        # train mode: the batch's statistics (biased variance), the same branches
        y_train, _ = block.apply({**v, **extra}, x, train=True, mutable=["batch_stats"])
        axes = (0, 1, 2)
        assert rel_l2(y_train, batch_norm(pre_bn, bn, pre_bn.mean(axes), pre_bn.var(axes))) < 1e-12
        kernel, bias = block.fuse(v, cin, **({} if branch_weights is None else {"branch_weights": branch_weights}))
        fused = conv2d(x, kernel, block.strides, kernel.shape[0] // 2, block.groups, bias=bias)
        assert rel_l2(fused, expected) < 1e-12


@SETTINGS
@given(dbb_configs(), st.integers(0, 2**31 - 1), st.integers(7, 12), st.booleans())
def test_online_dbb_collapsed_conv_equals_the_branches_and_fuses_exactly(cfg, seed, size, on_weights):
    """Both forms of the 1x1-KxK chain: composed into the kernel, or run on the map."""
    cin = cfg.pop("cin")
    with mock.patch.object(online, "compose_on_weights", lambda *args: on_weights):
        check_collapsed_block(OnlineDBB(**cfg), cin, seed, size, branches_reference)


def repnas_branches_reference(block, params, x, weights):
    """The online RepNAS block's pre-BN output: each primitive of its static mask run on the
    feature map as the exact RepNAS block runs it (without the BatchNorms), scaled by its
    scale vector and ``weights[i]``, summed with the scaled identity."""
    s, g = block.strides, block.groups
    mask = block.static_mask or (True,) * 6
    if not any(mask) and "identity" not in params:
        mask, weights = (False, False, True, False, False, False), np.ones(6)
    outputs = [
        lambda p: conv2d(x, p["kernel"], s, 0, g),
        lambda p: avg_pool(np.pad(conv2d(x, p["kernel"], 1, 0, g), ((0, 0), (1, 1), (1, 1), (0, 0))), 3, s, 0),
        lambda p: conv2d(x, p["kernel"], s, 1, g),
        lambda p: (conv2d(conv2d(x, np.asarray(p["conv1"]) + grouped_identity_1x1(x.shape[-1], g), 1, 0, g),
                          p["conv2"], 1, 1, g) if s == 1 else conv2d(x, p["conv2"], s, 1, g)),
        lambda p: conv2d(x, p["kernel"], s, ((0, 0), (1, 1)), g),
        lambda p: conv2d(x, p["kernel"], s, ((1, 1), (0, 0)), g),
    ]
    y = np.asarray(x, np.float64) * np.asarray(params["identity"]["scale"]) if "identity" in params else 0.0
    for i, name in enumerate(ONLINE_PRIMITIVES):
        if mask[i]:
            y = y + outputs[i](params[name]) * np.asarray(params[name]["scale"]) * weights[i]
    return y


@st.composite
def online_repnas_configs(draw):
    stride = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from([1, 2]))
    cin = groups * draw(st.integers(1, 3))
    features = draw(st.sampled_from([cin, groups * draw(st.integers(1, 3))]))
    mask = draw(st.one_of(st.none(), st.tuples(*[st.booleans()] * 6)))
    weights = draw(st.one_of(st.none(), st.lists(st.floats(-2, 2), min_size=6, max_size=6)))
    return dict(cin=cin, features=features, strides=stride, groups=groups, static_mask=mask), weights


@SETTINGS
@given(online_repnas_configs(), st.integers(0, 2**31 - 1), st.integers(5, 9), st.booleans())
def test_online_repnas_collapsed_conv_equals_the_branches_and_fuses_exactly(cfg_weights, seed, size, on_weights):
    cfg, weights = cfg_weights
    cin = cfg.pop("cin")
    block = OnlineRepNASBlock(**cfg)
    reference_weights = np.ones(6) if weights is None else np.asarray(weights)
    with mock.patch.object(online, "compose_on_weights", lambda *args: on_weights):
        check_collapsed_block(block, cin, seed, size,
                              lambda b, p, x: repnas_branches_reference(b, p, x, reference_weights), weights)


def test_the_chain_is_composed_on_the_weights_where_that_costs_less():
    first, second = jnp.zeros((1, 1, 512, 512)), jnp.zeros((3, 3, 512, 512))
    # a 512-wide layer on 2x2 maps of 32 images: composing (512^3 * 9) costs more than the maps
    assert not online.compose_on_weights((first, second), 1, (2, 2), 1, 32 * jax.device_count())
    # on 14x14 maps of 64 images, the other way round
    assert online.compose_on_weights((first, second), 1, (14, 14), 1, 64 * jax.device_count())
    # a 16-wide layer composes already on the 8x8 maps of 8 images, not on one 1x1 map
    narrow = (first[..., :16, :16], second[..., :16, :16])
    assert online.compose_on_weights(narrow, 1, (8, 8), 1, 8 * jax.device_count())
    assert not online.compose_on_weights(narrow, 1, (1, 1), 1, 1)


def backward_buffers_mb(block, x):
    """XLA's temporary buffers (MB) for the parameter gradient of a train-mode loss on
    ``block``: mostly what the forward keeps for the backward pass."""
    v = block.init(jax.random.key(0), x, False)

    def loss(params):
        y, _ = block.apply({**v, "params": params}, x, True, mutable=["batch_stats"])
        return jnp.sum(y * y)
    return compiled_temp_mb(jax.jit(jax.grad(loss)).lower(v["params"]).compile())


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("exact,collapsed", [
    (lambda c, s: DiverseBranchBlock(c, 3, s), lambda c, s: OnlineDBB(c, 3, s)),
    (lambda c, s: RepNASBlock(c, s), lambda c, s: OnlineRepNASBlock(c, s))])
def test_an_online_block_keeps_what_a_plain_conv_keeps_for_the_backward_pass(exact, collapsed, strides):
    """One conv's maps, plus at most the 1x1 output of a chain run on the map (the online
    RepNAS block at stride 2 here: 1.16x); the exact blocks keep every branch's maps."""
    x = jnp.ones((16, 16, 16, 32))
    plain = backward_buffers_mb(ConvBN(32, 3, strides), x)
    assert backward_buffers_mb(collapsed(32, strides), x) < 1.25 * plain
    assert backward_buffers_mb(exact(32, strides), x) > 3 * plain


def test_online_repnas_refuses_a_cond_mask():
    block = OnlineRepNASBlock(4)
    x = jnp.ones((1, 5, 5, 4))
    v = block.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="kernel level"):
        block.apply({**v, "branch_weights": {"w": jnp.ones(6), "mask": jnp.ones(6)}}, x)


@pytest.mark.parametrize("block,branches", [
    ("orepa", ("orepa_1x1", "orepa_avg", "orepa_1x1_kxk")),
    ("repnas_online", ("conv1x1", "avgpool", "conv1x1_3x3", "conv1x3", "conv3x1"))])
def test_a_plain_network_carried_over_computes_the_same_function(block, branches):
    plain = create_model("mobilenet_v1", block="plain", num_classes=5, width=0.25)
    online = create_model("mobilenet_v1", block=block, num_classes=5, width=0.25)
    x = jax.random.normal(jax.random.key(2), (2, 32, 32, 3))
    plain_v = random_variables(plain, x, seed=4, scale=0.2)
    plain_v["batch_stats"] = jax.tree.map(jnp.abs, plain_v["batch_stats"])
    v = branches_from_plain(online, plain_v, input_shape=x.shape)
    with jax.default_matmul_precision("highest"):
        assert rel_l2(jax.jit(online.apply)(v, x), jax.jit(plain.apply)(plain_v, x)) < 1e-5
        grads = jax.jit(jax.grad(lambda p: online.apply({**v, "params": p}, x, train=True,
                                                        mutable=["batch_stats"])[0].sum()))(v["params"])
    # the other branches add nothing yet, but learn: their scales get gradients
    for branch in branches:
        assert float(jnp.abs(grads["conv1"][branch]["scale"]).sum()) > 0
    deploy, deploy_v = fuse_params(online, v, input_shape=x.shape)
    assert rel_l2(jax.jit(deploy.apply)(deploy_v, x), jax.jit(plain.apply)(plain_v, x)) < 1e-5
