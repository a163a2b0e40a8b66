"""What every layer of nas_jax shares: XLA compiler options and atomic JSON files."""
from __future__ import annotations

import json
import os
from typing import Optional

import jax

# XLA CPU's algebraic simplifier swaps the operands of a convolution whose kernel is
# larger than its input (the 3x3 convs on the 2x2 / 1x1 maps of a ResNet's last stage at
# 64 / 32 pixels); the swapped form runs as a naive loop, ~1.8 s for one 512-channel
# conv at batch 32, 90% of the step. Skipping the pass for the step's executable avoids it.
CPU_SKIP_ALGSIMP = {"xla_disable_hlo_passes": "algsimp"}

# A program that runs once (initialisation, a parity check) is compiled without the
# backend's optimisations: XLA CPU takes minutes to optimise the random-bit generation of
# a ResNet's initialisers, and seconds without; numerics stay IEEE float32.
RUN_ONCE_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def compiler_options(cpu_skip_algsimp: bool) -> Optional[dict]:
    """XLA options for the compiled steps: ``CPU_SKIP_ALGSIMP`` when asked for and the
    backend is the CPU, else None (the defaults)."""
    if cpu_skip_algsimp and jax.default_backend() == "cpu":
        return dict(CPU_SKIP_ALGSIMP)
    return None


def write_text_atomic(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename, so a kill leaves
    either the old file or the new one, never half of one. In a multi-process job only
    process 0 writes (``nas_jax.distributed``)."""
    if jax.process_index() != 0:
        return
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json_atomic(path: str, doc, indent: Optional[int] = None) -> None:
    """``doc`` as JSON to ``path``, atomically (``write_text_atomic``)."""
    write_text_atomic(path, json.dumps(doc, indent=indent))


def save_figure(fig, path: str, dpi: int = 110) -> str:
    """Saves and closes a matplotlib figure (process 0 alone writes); returns ``path``."""
    import matplotlib.pyplot as plt
    if jax.process_index() == 0:
        fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
