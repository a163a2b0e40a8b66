"""Prints the README's "weights in, weights out" table: every conversion's relative L2 error
against the real PyTorch class (random weights and BatchNorm statistics, eval mode, float32,
64x64 inputs) or against JAX for ONNX (onnxruntime).

    python experiments/interop_table.py
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import jax  # noqa: E402

from nas_jax import branches_from_plain, create_model, fuse_params  # noqa: E402
from nas_jax.interop import from_timm, from_torchvision, resize_torch_module, to_timm, to_torchvision  # noqa: E402
from nas_jax.interop.onnx_export import export_onnx  # noqa: E402
from helpers import randomize  # noqa: E402
from reference import rel_l2  # noqa: E402
from torch_zoo import as_torch, random_eval, timm, torch_out, torchvision  # noqa: E402

SIZE = 64


def main():
    jax.config.update("jax_default_matmul_precision", "highest")
    x = jax.random.normal(jax.random.key(1), (2, SIZE, SIZE, 3))
    rows = []
    for source, name, build in [
            ("torchvision", "resnet18", lambda: torchvision.models.resnet18(num_classes=10)),
            ("torchvision", "resnet50", lambda: torchvision.models.resnet50(num_classes=10)),
            ("torchvision", "mobilenet_v2", lambda: torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.5)),
            ("timm", "resnet50", lambda: timm.create_model("resnet50", num_classes=10)),
            ("timm", "repvgg_a0", lambda: timm.create_model("repvgg_a0", num_classes=10))]:
        module = random_eval(build())
        importer, exporter = (from_torchvision, to_torchvision) if source == "torchvision" else (from_timm, to_timm)
        model, variables = importer(name, module.state_dict(), (1, SIZE, SIZE, 3))
        expected = torch_out(module, x)
        rows.append((f"{source} `{name}` in", f"`from_{source}`", rel_l2(jax.jit(model.apply)(variables, x), expected)))
        again = build()
        again.load_state_dict(as_torch(exporter(name, variables)), strict=True)
        rows.append((f"zoo -> {source} `{name}` (strict load)", f"`to_{source}`", rel_l2(torch_out(again.eval(), x), expected)))
        if name == "resnet18":
            dbb = model.clone(block="dbb")
            dbb_variables = branches_from_plain(dbb, variables, input_shape=(1, SIZE, SIZE, 3))
            rows.append(("torchvision `resnet18` -> DBB at step 0", "`branches_from_plain`",
                         rel_l2(jax.jit(dbb.apply)(dbb_variables, x), expected)))
    dbb = create_model("resnet18", block="dbb", num_classes=10, width=0.5)
    v = randomize(jax.eval_shape(dbb.init, jax.random.key(0), x), 3)
    deploy_model, deploy = fuse_params(dbb, v, input_shape=x.shape)
    module = torchvision.models.resnet18(num_classes=10)
    state_dict = to_torchvision("resnet18", deploy)
    resize_torch_module(module, state_dict)
    module.load_state_dict(as_torch(state_dict), strict=True)
    rows.append(("fused DBB ResNet-18 x0.5 -> torchvision (resized, strict load)", "`to_torchvision` + `resize_torch_module`",
                 rel_l2(torch_out(module.eval(), x), jax.jit(dbb.apply)(v, x))))
    result = export_onnx(deploy_model, deploy, "/tmp/interop_table.onnx", (2, SIZE, SIZE, 3))
    rows.append(("fused DBB ResNet-18 x0.5 -> ONNX (onnxruntime)", "`export_onnx` / `nas-jax export onnx`",
                 result["relative_l2"]))
    print("| source or target | API / CLI | relative L2 error |\n| --- | --- | --- |")
    for what, api, error in rows:
        print(f"| {what} | {api} | {error:.1e} |")


if __name__ == "__main__":
    main()
