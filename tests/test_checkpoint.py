"""Checkpointer: round trip with the data state, max_to_keep, and a damaged newest
checkpoint that falls back to the previous one with a warning."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nas_jax.train.checkpoint import Checkpointer
from nas_jax.train.state import TrainState
from nas_jax.train.step import create_mesh, replicated


def _state(value: float) -> TrainState:
    mesh = create_mesh()
    tree = TrainState(step=jnp.int32(value), params={"w": jnp.full((4, 3), value)}, batch_stats={},
                      opt_state=({"m": jnp.full((4, 3), -value)},), extra={"alpha": jnp.arange(6.0) * value})
    return jax.device_put(tree, replicated(mesh))


def _abstract():
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), _state(0.0))


def _save_steps(directory, steps, max_to_keep=5):
    checkpointer = Checkpointer(directory, max_to_keep)
    for s in steps:
        checkpointer.save(s, _state(float(s)), {"epoch": 0, "batch": s}, {"seed": 1})
    checkpointer.wait()
    return checkpointer


def test_round_trip_and_max_to_keep(tmp_path):
    checkpointer = _save_steps(str(tmp_path), [1, 2, 3, 4], max_to_keep=2)
    assert checkpointer.steps() == [3, 4]
    restored = Checkpointer(str(tmp_path)).restore_latest(_abstract())
    assert restored.step == 4 and restored.data_state == {"epoch": 0, "batch": 4} and restored.config == {"seed": 1}
    np.testing.assert_array_equal(restored.state.extra["alpha"], np.arange(6.0) * 4)
    assert restored.state.params["w"].sharding.is_equivalent_to(replicated(create_mesh()), 2)


def test_empty_directory_restores_nothing(tmp_path):
    assert Checkpointer(str(tmp_path)).restore_latest(_abstract()) is None


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path, damage):
    _save_steps(str(tmp_path), [1, 2]).close()
    files = [os.path.join(root, f) for root, _, names in os.walk(tmp_path / "2" / "state") for f in names]
    for path in files:
        if damage == "delete":
            os.remove(path)
        else:
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 3)
    checkpointer = Checkpointer(str(tmp_path))
    with pytest.warns(UserWarning, match="step 2 .* unreadable"):
        restored = checkpointer.restore_latest(_abstract())
    assert restored.step == 1
    np.testing.assert_array_equal(restored.state.params["w"], np.full((4, 3), 1.0))
    assert (tmp_path / "corrupt_2").is_dir() and checkpointer.steps() == [1]
    checkpointer.save(2, _state(5.0), {"epoch": 0, "batch": 2}, {})  # the step can be written again
    checkpointer.wait()
    assert Checkpointer(str(tmp_path)).restore_latest(_abstract()).step == 2
