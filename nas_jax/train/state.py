"""The train state: one pytree that a step maps to the next and a checkpoint stores."""
from __future__ import annotations

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class TrainState:
    """``step``: int32 scalar, the number of steps taken; ``params`` / ``batch_stats``: the
    model's variable collections; ``opt_state``: the weight optimiser's state; ``extra``:
    any pytree the task owns (e.g. RepNAS alphas and their optimiser state), ``{}`` if
    none. Arrays only, so it can be jit-ed, donated, sharded and checkpointed."""
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    extra: Any
