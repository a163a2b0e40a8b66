"""Tests run on 8 fake CPU devices so that the sharded code paths are exercised.

XLA's CPU backend optimisations and LLVM's expensive passes are turned off: they change
how fast the compiled code runs, not what it computes, and compiling dominates this
suite's time (the expensive passes alone: 68 s -> 47 s for tests/test_prune_search_cli.py).
"""
import os

FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {FAST_COMPILE}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

PARITY_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "parity"


@pytest.fixture(scope="session")
def parity_dir():
    if not PARITY_DIR.is_dir():
        pytest.fail(f"golden files not found at {PARITY_DIR}: ../shared/parity must sit beside the repo")
    return PARITY_DIR
