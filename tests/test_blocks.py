"""Fused blocks equal their multi-branch eval forward, for random configurations and statistics."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from helpers import as_float64, random_variables, rel_l2
from nas_jax.rep.blocks import PRIMITIVES, BNAndPad, DeployConv, DiverseBranchBlock, RepNASBlock
from reference import conv2d

SETTINGS = settings(max_examples=12, deadline=None)


def _fused_forward(block, variables, x):
    kernel, bias = block.fuse(variables, x.shape[-1])
    return conv2d(x, kernel, block.strides, padding=kernel.shape[0] // 2, groups=block.groups, bias=bias)


@st.composite
def dbb_configs(draw):
    k = draw(st.sampled_from([3, 5, 7]))
    stride = draw(st.sampled_from([1, 2]))
    if draw(st.booleans()):  # depthwise, 2x internal width
        c = draw(st.integers(2, 6))
        return dict(cin=c, features=c, kernel_size=k, strides=stride, groups=c, internal_channels=None)
    groups = draw(st.sampled_from([1, 2]))
    cin = groups * draw(st.integers(1, 4))
    features = groups * draw(st.integers(1, 4))
    internal = draw(st.sampled_from([None, cin, 2 * cin]))
    return dict(cin=cin, features=features, kernel_size=k, strides=stride, groups=groups, internal_channels=internal)


@SETTINGS
@given(dbb_configs(), st.integers(0, 2**31 - 1), st.integers(7, 12))
def test_dbb_fuses_exactly(cfg, seed, size):
    """In float64 (block, fusion and reference conv), where exact fusion agrees to ~1e-15."""
    cin = cfg.pop("cin")
    block = DiverseBranchBlock(**cfg)
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(seed % 1000), (2, size, size, cin), jnp.float64)
        v = as_float64(random_variables(block, x, seed))
        y = block.apply(v, x)
        assert y.dtype == jnp.float64
        assert rel_l2(_fused_forward(block, v, x), y) < 1e-12


@st.composite
def repnas_configs(draw):
    stride = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from([1, 2]))
    cin = groups * draw(st.integers(1, 4))
    features = cin if (stride == 1 and draw(st.booleans())) else groups * draw(st.integers(1, 4))
    mask = tuple(draw(st.lists(st.booleans(), min_size=6, max_size=6)))
    return dict(cin=cin, features=features, strides=stride, groups=groups, static_mask=mask)


@SETTINGS
@given(repnas_configs(), st.integers(0, 2**31 - 1), st.booleans())
def test_repnas_block_fuses_exactly(cfg, seed, weighted):
    """In float64, as above."""
    cin = cfg.pop("cin")
    block = RepNASBlock(**cfg)
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(seed % 1000), (2, 9, 9, cin), jnp.float64)
        v = as_float64(random_variables(block, x, seed))
        w = None
        if weighted:
            w = jnp.asarray(np.random.default_rng(seed).uniform(0.2, 1.0, 6), jnp.float64)
            v = {**v, "branch_weights": {"w": w}}
        y = block.apply(v, x)
        kernel, bias = block.fuse(v, cin, branch_weights=w)
        assert y.dtype == kernel.dtype == jnp.float64
        fused = conv2d(x, kernel, cfg["strides"], padding=1, groups=cfg["groups"], bias=bias)
        assert rel_l2(fused, y) < 1e-12


def test_repnas_block_skips_masked_branches_and_falls_back_to_conv3x3():
    x = jnp.ones((1, 8, 8, 4))
    block = RepNASBlock(6, strides=2, static_mask=(False,) * 6)  # no identity at stride 2
    v = random_variables(block, x)
    assert set(v["params"]) == {f"_ops_{i}" for i in range(6)}  # init creates every branch
    jaxpr = str(jax.make_jaxpr(lambda v: block.apply(v, x))(v))
    assert jaxpr.count("conv_general_dilated") == 1  # only the fallback conv3x3 runs
    only_conv3x3 = RepNASBlock(6, strides=2, static_mask=(False, False, True, False, False, False))
    np.testing.assert_allclose(block.apply(v, x), only_conv3x3.apply(v, x), rtol=1e-6)


def test_repnas_block_computes_only_kept_branches():
    x = jnp.ones((1, 8, 8, 4))
    full = RepNASBlock(4)
    v = random_variables(full, x)
    def n_convs(mask):
        return str(jax.make_jaxpr(lambda v: RepNASBlock(4, static_mask=mask).apply(v, x))(v)).count("conv_general")
    assert n_convs((True, False, False, False, False, False)) == 1
    assert n_convs((True, True, True, True, True, True)) == 1 + 1 + 1 + 2 + 1 + 1


def test_bn_and_pad_fills_the_border_with_the_bn_output_of_zero():
    x = jax.random.normal(jax.random.key(0), (1, 4, 4, 3))
    layer = BNAndPad(pad=2)
    v = random_variables(layer, x, 1)
    y = np.asarray(layer.apply(v, x))
    zero_response = np.asarray(layer.apply(v, jnp.zeros((1, 1, 1, 3))))[0, 2, 2]
    assert y.shape == (1, 8, 8, 3)
    np.testing.assert_allclose(y[0, 0, 0], zero_response, rtol=1e-6)
    np.testing.assert_allclose(y[0, -1, 3], zero_response, rtol=1e-6)
    assert not np.allclose(y[0, 3, 3], zero_response)


def test_fusion_under_jit_equals_eager_and_gradients_flow():
    block = DiverseBranchBlock(8, 3, 1, groups=2)
    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 4))
    v = random_variables(block, x)
    eager = block.fuse(v, 4)
    jitted = jax.jit(lambda v: block.fuse(v, 4))(v)
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    grads = jax.grad(lambda v: sum(jnp.sum(t ** 2) for t in block.fuse(v, 4)))(v)
    flat = jax.tree_util.tree_leaves_with_path(grads)
    dead = [jax.tree_util.keystr(p) for p, g in flat if float(jnp.abs(g).max()) == 0.0]
    assert not dead, f"no gradient reaches {dead}"


@pytest.mark.parametrize("block", [DiverseBranchBlock(8, 3, 1), DiverseBranchBlock(4, 3, 2, groups=4),
                                   RepNASBlock(4, 1)])
def test_bfloat16_fusion_within_bfloat16_tolerance(block):
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
    v = random_variables(block, x)
    y32 = block.apply(v, x)
    v16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), v)
    kernel, bias = block.fuse(v16, 4)
    assert kernel.dtype == jnp.bfloat16
    deploy = DeployConv(block.features, 3, block.strides, groups=block.groups, dtype=jnp.bfloat16)
    y16 = deploy.apply({"params": {"conv": {"kernel": kernel, "bias": bias}}}, x.astype(jnp.bfloat16))
    assert rel_l2(y16.astype(jnp.float32), y32) < 3e-2
    unfused16 = block.clone(dtype=jnp.bfloat16).apply(v16, x.astype(jnp.bfloat16))
    assert rel_l2(unfused16.astype(jnp.float32), y32) < 3e-2


def test_primitive_order_is_the_official_codes(parity_dir):
    """The official RepNAS MixedOp's primitives, in the order it builds ``_ops``, as its
    golden file records them, and each of our ``_ops_i`` has the official ``_ops.i``'s
    kernels (window shapes, in HWIO)."""
    import json

    from nas_jax.interop.names import oihw_to_hwio
    from nas_jax.rep.blocks import OFFICIAL_PRIMITIVES

    with np.load(parity_dir / "repnas_s2_all.npz") as golden:
        config = json.loads(str(golden["meta"]))["config"]
        official = {k[len("sd/"):]: golden[k].shape for k in golden.files
                    if k.startswith("sd/_ops.") and k.endswith(".weight") and golden[k].ndim == 4}
    assert tuple(config["primitives"]) == OFFICIAL_PRIMITIVES
    assert len(PRIMITIVES) == len(OFFICIAL_PRIMITIVES)
    block = RepNASBlock(config["out_channels"], config["stride"], config["groups"])
    x = jnp.zeros((1, 9, 9, config["in_channels"]))
    params = jax.eval_shape(block.init, jax.random.key(0), x)["params"]
    for i in range(len(PRIMITIVES)):
        theirs = sorted(oihw_to_hwio(np.zeros(shape)).shape for name, shape in official.items()
                        if name.startswith(f"_ops.{i}."))
        ours = sorted(leaf.shape for leaf in jax.tree.leaves(params[f"_ops_{i}"]) if leaf.ndim == 4)
        assert ours == theirs, (i, PRIMITIVES[i])
