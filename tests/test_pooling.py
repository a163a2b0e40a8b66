"""``max_pool``'s own gradient: the first maximal element of each window (row-major) gets
the window's output gradient, checked against a NumPy loop, ties included."""
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st

from nas_jax.models.pooling import max_pool


def numpy_max_pool_grad(x, dy, size, strides):
    dx = np.zeros_like(x)
    n, h, w, c = dy.shape
    for b in range(n):
        for a in range(h):
            for e in range(w):
                for ch in range(c):
                    window = x[b, a * strides:a * strides + size, e * strides:e * strides + size, ch]
                    i, j = np.unravel_index(np.argmax(window), window.shape)  # the first maximum
                    dx[b, a * strides + i, e * strides + j, ch] += dy[b, a, e, ch]
    return dx


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([2, 3]), st.sampled_from([1, 2, 3]), st.integers(3, 9),
       st.booleans())
def test_gradient_goes_to_the_first_maximum_of_each_window(seed, size, strides, length, ties):
    r = np.random.default_rng(seed)
    shape = (2, length, length + 1, 3)
    # small integers make ties inside windows common
    x = r.integers(0, 3, shape).astype(np.float32) if ties else r.standard_normal(shape).astype(np.float32)
    y, vjp = jax.vjp(lambda x: max_pool(x, size, strides), jnp.asarray(x))
    np.testing.assert_array_equal(y, jax.lax.reduce_window(x, -np.inf, jax.lax.max, (1, size, size, 1),
                                                           (1, strides, strides, 1), "VALID"))
    dy = r.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(jax.jit(vjp)(jnp.asarray(dy))[0], numpy_max_pool_grad(x, dy, size, strides),
                               rtol=1e-6, atol=1e-6)  # float32 sums of up to size^2 terms, any order
