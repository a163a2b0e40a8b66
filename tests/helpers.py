"""Shared test helpers: random variables with non-trivial BatchNorm statistics."""
import jax
import jax.numpy as jnp
import numpy as np


def randomize(variables, seed=0, scale=0.3):
    """Every leaf replaced by random values; BN variances positive, BN scales near 1."""
    rng = np.random.default_rng(seed)

    def leaf(path, x):
        name = getattr(path[-1], "key", str(path[-1]))
        if name == "var":
            v = rng.uniform(0.5, 2.0, x.shape)
        elif name == "scale":
            v = rng.uniform(0.5, 1.5, x.shape)
        else:
            v = rng.normal(0.0, scale, x.shape)
        return jnp.asarray(v, x.dtype)

    return jax.tree_util.tree_map_with_path(leaf, variables)


def rel_l2(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def random_variables(model, x, seed=0, scale=0.3):
    """Random variables for ``model`` on input ``x`` without running its initialisers
    (compiling a big model's random init costs far more than the test itself)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    return randomize(shapes, seed, scale)


def as_float64(tree):
    """Every array leaf of ``tree`` as float64 (call under ``jax.enable_x64(True)``)."""
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)
