"""``nas-jax export onnx|torchvision ...``: a network to another stack.

Sources: ``--workdir W`` (a run fused by ``nas-jax fuse``: ``W/deploy``), or
``--network DIR`` (a network directory: ``nas-jax prune export`` or ``nas-jax import``).

- ``onnx --output F.onnx``: the deploy form as ONNX (``nas_jax.interop.onnx_export``),
  checked with onnxruntime against JAX; prints the errors as JSON.
- ``torchvision NAME --output F.pth``: the torchvision state_dict
  (``nas_jax.interop.to_torchvision``); a network at other widths than the class's loads
  after ``nas_jax.interop.resize_torch_module``.
"""
from __future__ import annotations

import json
import os

HELP = "export a fused run or a network directory to ONNX or to a torchvision state_dict"


def add_arguments(parser) -> None:
    parser.add_argument("format", choices=("onnx", "torchvision"))
    parser.add_argument("name", nargs="?", default=None, help="torchvision: the class name (resnet18, ...)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="a run fused by `nas-jax fuse` (reads W/deploy)")
    source.add_argument("--network", help="a network directory (`nas-jax prune export` / `nas-jax import`)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--batch", type=int, default=2, help="onnx: the batch of the onnxruntime check")


def _fused_run(workdir):
    """(deploy model, deploy variables, image shape) of a run fused by ``nas-jax fuse``."""
    import jax
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    from nas_jax.models import create_model
    from nas_jax.train.run import Run

    settings = os.path.join(workdir, "deploy.json")
    if not os.path.exists(settings):
        raise FileNotFoundError(f"{workdir!r} has no fused network (no deploy.json): run `nas-jax fuse "
                                f"--workdir {workdir}` first")
    with open(settings) as f:
        doc = json.load(f)
    model = create_model(doc["model"], block="deploy", num_classes=doc["num_classes"], width=doc["width"],
                         widths=tuple((p, int(w)) for p, w in doc.get("widths", [])))
    image_shape = Run.restore(workdir).eval_data.image_shape
    target = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                            jnp.zeros((1,) + tuple(image_shape)))
    with ocp.StandardCheckpointer() as checkpointer:
        variables = checkpointer.restore(os.path.abspath(os.path.join(workdir, "deploy")), target)
    return model, variables, tuple(image_shape)


def _network(directory):
    from nas_jax.models.network import load_network

    spec, model, variables = load_network(directory)
    return model, variables, (spec.image_size, spec.image_size, 3)


def run(args) -> int:
    from nas_jax.interop.onnx_export import export_onnx
    from nas_jax.interop.third_party import to_torchvision

    model, variables, image_shape = _fused_run(args.workdir) if args.workdir else _network(args.network)
    if args.format == "onnx":
        result = export_onnx(model, variables, args.output, (args.batch,) + image_shape)
    else:
        if not args.name:
            raise ValueError("torchvision export needs the class name, e.g. `export torchvision resnet18`")
        import torch

        state_dict = to_torchvision(args.name, variables)
        torch.save({k: torch.from_numpy(v) for k, v in state_dict.items()}, args.output)
        result = {"path": args.output, "tensors": len(state_dict)}
    print(json.dumps(result))
    return 0
