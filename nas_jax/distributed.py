"""Many processes, one job: JAX's multi-process runtime for every command that computes.

A job on a pod or cluster is one ``nas-jax`` process per host (or per GPU). Each process
is started with the same command plus, where the cluster does not say it by itself,

    --coordinator_address HOST:PORT --num_processes N --process_id I

(the parameters of ``jax.distributed.initialize``). With none of them, ``initialize`` is
called without arguments where JAX detects a cluster by itself (Cloud TPU pod slices,
SLURM, Open MPI, or ``JAX_COORDINATOR_ADDRESS`` set), and otherwise the job is one
process. On CPUs the collectives between processes go through gloo.

After that every device of every process is in ``jax.devices()``: the mesh spans them,
each process feeds its share of every global batch, process 0 alone writes reports,
metrics, plots and TensorBoard files (``is_primary``), and every process takes part in
each orbax checkpoint.
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

FLAGS = ("--coordinator_address", "--num_processes", "--process_id")


def split_flags(argv: List[str]) -> Tuple[List[str], dict]:
    """(``argv`` without the flags of ``FLAGS``, ``{name: value}`` of those given), accepting
    ``--flag value`` and ``--flag=value`` anywhere on the command line."""
    rest, found, i = [], {}, 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in FLAGS:
            if not eq:
                if i + 1 >= len(argv):
                    raise ValueError(f"{name} needs a value")
                value, i = argv[i + 1], i + 1
            found[name[2:]] = value
        else:
            rest.append(arg)
        i += 1
    return rest, found


def _cluster_detected() -> bool:
    """Whether the environment describes a multi-process job JAX can join by itself."""
    env = os.environ
    return bool(env.get("JAX_COORDINATOR_ADDRESS")
                or int(env.get("SLURM_NTASKS", "1") or 1) > 1
                or int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1
                or "," in env.get("TPU_WORKER_HOSTNAMES", ""))


def initialize(flags: dict) -> None:
    """Joins the job ``flags`` (from ``split_flags``) or the environment describe; a no-op
    for a single process. Must run before anything touches a JAX backend."""
    if not flags and not _cluster_detected():
        return
    import jax
    if flags and set(flags) != {"coordinator_address", "num_processes", "process_id"}:
        missing = sorted({"coordinator_address", "num_processes", "process_id"} - set(flags))
        raise ValueError(f"a multi-process job needs all of {', '.join(FLAGS)}; missing: "
                         + ", ".join("--" + m for m in missing))
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices only; others keep theirs
    if flags:
        jax.distributed.initialize(flags["coordinator_address"], int(flags["num_processes"]),
                                   int(flags["process_id"]))
    else:
        jax.distributed.initialize()


def is_primary() -> bool:
    """Whether this process writes the job's reports, metrics and plots (process 0)."""
    import jax
    return jax.process_index() == 0


def speaker() -> Optional[str]:
    """``"[process I/N]"`` in a multi-process job (a prefix for log lines), else None."""
    import jax
    return f"[process {jax.process_index()}/{jax.process_count()}]" if jax.process_count() > 1 else None
