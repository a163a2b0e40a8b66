"""A deploy (fused), plain or pruned zoo network as an ONNX model, checked with onnxruntime.

``export_onnx(model, variables, path, input_shape)`` traces the eval-mode forward of the
deploy network with ``jax2onnx`` (a plain conv-BN network is first folded into its deploy
form by ``fuse_params``, BatchNorm into the conv, as inference engines do; jax2onnx's own
BatchNorm lowering also mis-lays residual additions out) and runs the file with
onnxruntime on a random input against the JAX forward. The ONNX input is NHWC float32 like the JAX model's, the
batch axis symbolic (``B``). A network that still has multi-branch blocks (``block`` dbb
or repnas) is refused: fuse it first (``fuse_params`` / ``nas-jax fuse``), so that the
exported graph costs what the plain network costs.

Needs the ``onnx`` extra: ``pip install nas_jax[onnx]`` (jax2onnx, onnxruntime).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nas_jax.models import MULTI_BRANCH_KINDS
from nas_jax.rep.fuse import fuse_params


def export_onnx(model, variables, path: str, input_shape: Sequence[int], seed: int = 0) -> dict:
    """Writes ``path`` (the model's deploy form); returns ``{"path", "input_shape",
    "relative_l2", "max_abs_diff"}`` of onnxruntime's output against JAX's (float32,
    highest matmul precision) on one input."""
    if getattr(model, "block", "plain") in MULTI_BRANCH_KINDS:
        raise ValueError(f"the model still has {model.block} blocks: an ONNX export of the training-time "
                         "branches would cost several convs per layer. Fuse it first: "
                         "deploy_model, deploy_variables = nas_jax.fuse_params(model, variables) "
                         "(or `nas-jax fuse --workdir W`), then export the deploy model")
    try:
        import onnxruntime
        from jax2onnx import to_onnx
    except ImportError as err:
        raise ImportError("ONNX export needs jax2onnx and onnxruntime: pip install nas_jax[onnx]") from err
    inference = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
    if getattr(model, "block", None) == "plain":
        model, inference = fuse_params(model, inference, input_shape=(1,) + tuple(input_shape[1:]))
    to_onnx(lambda x: model.apply(inference, x, train=False), [("B",) + tuple(input_shape[1:])], return_mode="file",
            output_path=str(path))
    x = np.asarray(jax.random.normal(jax.random.key(seed), tuple(input_shape), jnp.float32))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = session.run(None, {session.get_inputs()[0].name: x})[0]
    with jax.default_matmul_precision("highest"):
        reference = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(inference, x), np.float64)
    diff = np.asarray(ours, np.float64) - reference
    return {"path": str(path), "input_shape": list(input_shape),
            "relative_l2": float(np.linalg.norm(diff) / max(np.linalg.norm(reference), 1e-30)),
            "max_abs_diff": float(np.abs(diff).max())}
