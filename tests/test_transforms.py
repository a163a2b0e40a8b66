"""Each kernel transform, computed in float64, against a float64 NumPy recomputation of the
branches it replaces: exact transforms agree to ~1e-15, so a tolerance of 1e-12 leaves no
room for a wrong one (float32 rounding would blur that line)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nas_jax.rep import transforms as T
from helpers import rel_l2
from reference import conv2d

SETTINGS = settings(max_examples=30, deadline=None)


def _rng(seed):
    return np.random.default_rng(seed)


@st.composite
def grouped_shapes(draw):
    groups = draw(st.sampled_from([1, 2, 4]))
    cin = groups * draw(st.integers(1, 3))
    mid = groups * draw(st.integers(1, 3))
    out = groups * draw(st.integers(1, 3))
    return groups, cin, mid, out


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.sampled_from([1, 3, 5]), st.integers(1, 4))
def test_fold_batchnorm_matches_conv_then_bn(seed, k, out):
    r = _rng(seed)
    x = r.normal(size=(2, 7, 7, 3))
    kernel = r.normal(size=(k, k, 3, out))
    scale, bias, mean = r.normal(size=(3, out))
    var = r.uniform(0.1, 2.0, size=out)
    expected = (conv2d(x, kernel, padding=k // 2) - mean) / np.sqrt(var + T.BN_EPS) * scale + bias
    with jax.enable_x64(True):
        fk, fb = T.fold_batchnorm(*(jnp.asarray(a, jnp.float64) for a in (kernel, scale, bias, mean, var)))
    assert rel_l2(conv2d(x, fk, padding=k // 2, bias=fb), expected) < 1e-12


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.sampled_from([(1, 1), (1, 3), (3, 1), (1, 5), (3, 3)]),
       st.sampled_from([3, 5, 7]), st.sampled_from([1, 2]))
def test_pad_to_size_keeps_the_conv(seed, small, size, stride):
    if small[0] > size or small[1] > size:
        return
    r = _rng(seed)
    x = r.normal(size=(1, 9, 9, 2))
    kernel = r.normal(size=small + (2, 3))
    small_pad = ((small[0] // 2,) * 2, (small[1] // 2,) * 2)
    expected = conv2d(x, kernel, strides=stride, padding=small_pad)
    with jax.enable_x64(True):
        padded = T.pad_to_size(jnp.asarray(kernel, jnp.float64), size)
    assert padded.shape == (size, size, 2, 3)
    assert rel_l2(conv2d(x, padded, strides=stride, padding=size // 2), expected) < 1e-12


def test_pad_to_size_rejects_a_larger_kernel():
    with pytest.raises(ValueError, match="larger"):
        T.pad_to_size(jnp.zeros((5, 5, 1, 1)), 3)


@SETTINGS
@given(st.integers(0, 2**31 - 1), grouped_shapes(), st.sampled_from([1, 3, 5]), st.sampled_from([1, 2]))
def test_merge_1x1_kxk_matches_the_two_convs(seed, shapes, k, stride):
    groups, cin, mid, out = shapes
    r = _rng(seed)
    x = r.normal(size=(2, 8, 8, cin))
    k1, b1 = r.normal(size=(1, 1, cin // groups, mid)), r.normal(size=mid)
    k2, b2 = r.normal(size=(k, k, mid // groups, out)), r.normal(size=out)
    hidden = conv2d(x, k1, groups=groups, bias=b1)
    # the intermediate map is padded with b1, as BN-and-pad does
    expected = conv2d(hidden, k2, strides=stride, padding=k // 2, groups=groups, bias=b2, pad_value=b1)
    with jax.enable_x64(True):
        mk, mb = T.merge_1x1_kxk(*(jnp.asarray(a, jnp.float64) for a in (k1, b1, k2, b2)), groups)
    assert rel_l2(conv2d(x, mk, strides=stride, padding=k // 2, groups=groups, bias=mb), expected) < 1e-12


def test_merge_1x1_kxk_rejects_mismatched_widths():
    with pytest.raises(ValueError, match="cannot merge"):
        T.merge_1x1_kxk(jnp.zeros((1, 1, 4, 6)), jnp.zeros(6), jnp.zeros((3, 3, 4, 8)), jnp.zeros(8), 1)


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.sampled_from([(4, 1), (4, 2), (4, 4), (6, 3)]), st.sampled_from([3, 5]),
       st.sampled_from([1, 2]))
def test_avg_pool_and_identity_kernels(seed, channels_groups, k, stride):
    c, groups = channels_groups
    r = _rng(seed)
    x = r.normal(size=(1, 9, 9, c))
    with jax.enable_x64(True):
        pool_kernel = T.avg_pool_kernel(c, k, groups, dtype=jnp.float64)
    assert rel_l2(conv2d(x, pool_kernel, strides=stride, padding=k // 2, groups=groups), _avg_pool(x, k, stride)) < 1e-12
    assert rel_l2(conv2d(x, T.identity_kernel(c, k, groups), padding=k // 2, groups=groups), x) < 1e-12
    # a grouped 1x1 conv (to 2c channels) then the pool, as one kernel
    k1 = r.normal(size=(1, 1, c // groups, 2 * c))
    with jax.enable_x64(True):
        composed = T.compose_1x1_avg(jnp.asarray(k1), k)
    expected = _avg_pool(conv2d(x, k1, groups=groups), k, stride)
    assert rel_l2(conv2d(x, composed, strides=stride, padding=k // 2, groups=groups), expected) < 1e-12


def _avg_pool(x, k, stride):
    """A KxK average pool of ``x`` [1, 9, 9, C] zero-padded by K // 2, counting the padding."""
    padded = np.pad(x, ((0, 0), (k // 2,) * 2, (k // 2,) * 2, (0, 0)))
    size = (9 + 2 * (k // 2) - k) // stride + 1
    return np.stack([np.stack([padded[0, i * stride:i * stride + k, j * stride:j * stride + k].mean(axis=(0, 1))
                               for j in range(size)]) for i in range(size)])[None]


def test_grouped_identity_rejects_uneven_groups():
    with pytest.raises(ValueError, match="groups"):
        T.grouped_identity(6, 4)


def test_sum_branches_adds_kernels_and_biases():
    a = (jnp.ones((3, 3, 1, 2)), jnp.arange(2.0))
    b = (2 * jnp.ones((3, 3, 1, 2)), jnp.ones(2))
    k, bias = T.sum_branches([a, b])
    np.testing.assert_array_equal(k, 3 * np.ones((3, 3, 1, 2)))
    np.testing.assert_array_equal(bias, [1.0, 2.0])


def test_transforms_jit_and_differentiate():
    r = _rng(0)
    k1, b1, k2, b2 = (jnp.asarray(a, jnp.float32) for a in
                      (r.normal(size=(1, 1, 4, 4)), r.normal(size=4), r.normal(size=(3, 3, 2, 6)), r.normal(size=6)))
    eager = T.merge_1x1_kxk(k1, b1, k2, b2, 2)
    jitted = jax.jit(T.merge_1x1_kxk, static_argnums=4)(k1, b1, k2, b2, 2)
    np.testing.assert_allclose(eager[0], jitted[0], rtol=1e-6, atol=1e-6)
    grads = jax.grad(lambda a, b: T.merge_1x1_kxk(a, b, k2, b2, 2)[1].sum() + T.merge_1x1_kxk(a, b, k2, b2, 2)[0].sum(),
                     argnums=(0, 1))(k1, b1)
    assert all(float(jnp.abs(g).sum()) > 0 for g in grads)
    # d(sum of merged bias)/d b1[g*mid_g + m] = sum of the second kernel over space and group g's outputs
    expected = np.asarray(k2).reshape(3, 3, 2, 2, 3).sum(axis=(0, 1, 4)).T.reshape(-1)
    np.testing.assert_allclose(grads[1], expected, rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_transforms_keep_the_dtype(dtype):
    k, b = T.fold_batchnorm(jnp.ones((3, 3, 2, 4), dtype), *(jnp.ones(4, dtype) for _ in range(4)))
    assert k.dtype == dtype and b.dtype == dtype
    assert T.pad_to_size(jnp.ones((1, 1, 2, 4), dtype), 3).dtype == dtype
