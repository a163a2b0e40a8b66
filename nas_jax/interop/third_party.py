"""torchvision and timm checkpoints in and out of the zoo, at any widths.

``from_torchvision(name, state_dict)`` / ``from_timm(name, state_dict)`` return
``(model, variables)``: the zoo model at the checkpoint's widths and class count
(``nas_jax.interop.widths``) and its Flax variables; in eval mode it computes what the
PyTorch model computes. ``to_torchvision(name, variables)`` is the way back: the
torchvision state_dict of a plain, deploy (fused) or pruned zoo network; a network whose
widths differ from the class's own loads with ``strict=True`` after
``resize_torch_module`` (the PyTorch module's layers resized to the state_dict).

Supported (PyTorch class -> zoo model, block kind):

- torchvision ``resnet18/34/50``, timm ``resnet18/34/50`` -> ``resnet*``, plain;
- torchvision ``mobilenet_v2`` -> ``mobilenet_v2``, plain;
- timm ``repvgg_a0`` .. ``repvgg_b3`` (train-time form: 3x3 and 1x1 conv-BN branches and a
  BN identity) -> ``repvgg_*``, ``repnas`` blocks with the ``conv3x3`` and ``conv1x1``
  primitives on (the identity is the RepNAS block's own BN skip); the other primitives
  keep their initial values and are never computed.

Names are renamed by prefix rules, one table per architecture: a rule is a pair of
name prefixes (PyTorch, zoo in PyTorch notation), where ``{s}``, ``{b}``, ``{k}``, ``{i}``
stand for indices; the first matching rule wins, both ways.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from nas_jax.interop import names
from nas_jax.interop.torch_state_dict import StateDictMismatchError, load_state_dict, torch_to_flax
from nas_jax.interop.widths import model_at_widths, state_dict_param_shapes
from nas_jax.models import REPVGG_CONFIGS, create_model
from nas_jax.rep.blocks import PRIMITIVES
from nas_jax.rep.transforms import BN_EPS

Rules = Tuple[Tuple[str, str], ...]

RESNET_RULES: Rules = (
    ("conv1.", "stage0.conv1.conv."), ("bn1.", "stage0.conv1.bn."),
    ("layer{s}.{b}.conv{k}.", "stage{s}.{b}.conv{k}.conv."), ("layer{s}.{b}.bn{k}.", "stage{s}.{b}.conv{k}.bn."),
    ("layer{s}.{b}.downsample.0.", "stage{s}.{b}.shortcut.conv."),
    ("layer{s}.{b}.downsample.1.", "stage{s}.{b}.shortcut.bn."),
    ("fc.", "linear."),
)
MOBILENET_V2_RULES: Rules = (
    ("features.0.0.", "features.0.conv."), ("features.0.1.", "features.0.bn."),
    # the first inverted residual has no expansion layer
    ("features.1.conv.0.0.", "features.1.depthwise.conv."), ("features.1.conv.0.1.", "features.1.depthwise.bn."),
    ("features.1.conv.1.", "features.1.project.conv."), ("features.1.conv.2.", "features.1.project.bn."),
    ("features.18.0.", "features.18.conv."), ("features.18.1.", "features.18.bn."),
    ("features.{i}.conv.0.0.", "features.{i}.expand.conv."), ("features.{i}.conv.0.1.", "features.{i}.expand.bn."),
    ("features.{i}.conv.1.0.", "features.{i}.depthwise.conv."),
    ("features.{i}.conv.1.1.", "features.{i}.depthwise.bn."),
    ("features.{i}.conv.2.", "features.{i}.project.conv."), ("features.{i}.conv.3.", "features.{i}.project.bn."),
    ("classifier.1.", "linear."),
)
REPVGG_RULES: Rules = (  # after ``stem.`` / ``stages.S.B.`` became ``features.N.`` (_repvgg_layer_numbers)
    ("features.{i}.conv_kxk.", "features.{i}._ops.2."), ("features.{i}.conv_1x1.", "features.{i}._ops.0."),
    ("features.{i}.identity.", "features.{i}.skip_connect.bn."),
    ("head.fc.", "linear."),
)
REPVGG_PRIMITIVES = tuple(p in ("conv1x1", "conv3x3") for p in PRIMITIVES)  # RepVGG's two conv branches

_FIELD = re.compile(r"\\\{([a-z])\\\}")


def _compile(prefix: str) -> re.Pattern:
    """The regular expression of a rule's prefix (``re`` caches compiled patterns)."""
    return re.compile("^" + _FIELD.sub(r"(?P<\1>\\d+)", re.escape(prefix)))


def rename(name: str, rules: Rules, reverse: bool = False) -> Optional[str]:
    """``name`` with the first matching rule's prefix replaced (PyTorch -> zoo, or back
    with ``reverse``); None when no rule matches."""
    for torch_prefix, zoo_prefix in rules:
        source, target = (zoo_prefix, torch_prefix) if reverse else (torch_prefix, zoo_prefix)
        match = _compile(source).match(name)
        if match:
            return target.format(**match.groupdict()) + name[match.end():]
    return None


def _repvgg_layer_numbers(name: str, stage_sizes: Sequence[int]) -> str:
    """timm's ``stem.`` / ``stages.S.B.`` -> the zoo's flat ``features.0.`` / ``features.N.``."""
    if name.startswith("stem."):
        return "features.0." + name[len("stem."):]
    match = re.match(r"^stages\.(\d+)\.(\d+)\.", name)
    if not match:
        return name
    s, b = int(match.group(1)), int(match.group(2))
    return f"features.{1 + sum(stage_sizes[:s]) + b}." + name[match.end():]


def _repvgg_stage_names(name: str, stage_sizes: Sequence[int]) -> str:
    """The inverse of ``_repvgg_layer_numbers``."""
    match = re.match(r"^features\.(\d+)\.", name)
    if not match:
        return name
    if match.group(1) == "0":
        return "stem." + name[match.end():]
    n = int(match.group(1)) - 1
    for s, size in enumerate(stage_sizes):
        if n < size:
            return f"stages.{s}.{n}." + name[match.end():]
        n -= size
    return name


class Architecture:
    """How one PyTorch class's checkpoints map onto a zoo model."""

    def __init__(self, zoo_name: str, rules: Rules, block: str = "plain",
                 to_zoo_names: Callable[[str], str] = lambda n: n,
                 to_torch_names: Callable[[str], str] = lambda n: n,
                 branch_mask: Optional[Tuple[bool, ...]] = None):
        self.zoo_name, self.rules, self.block = zoo_name, rules, block
        self.to_zoo_names, self.to_torch_names, self.branch_mask = to_zoo_names, to_torch_names, branch_mask

    def zoo_name_of(self, torch_name: str) -> str:
        renamed = rename(self.to_zoo_names(torch_name), self.rules)
        if renamed is None:
            raise ValueError(f"tensor {torch_name!r} belongs to no layer of {self.zoo_name}")
        return renamed

    def torch_name_of(self, zoo_name: str) -> str:
        renamed = rename(zoo_name, self.rules, reverse=True)
        if renamed is None:
            raise ValueError(f"zoo tensor {zoo_name!r} has no place in the PyTorch {self.zoo_name}")
        return self.to_torch_names(renamed)


def _repvgg(variant: str) -> Architecture:
    stages = REPVGG_CONFIGS[variant][0]
    return Architecture(f"repvgg_{variant}", REPVGG_RULES, "repnas",
                        lambda n: _repvgg_layer_numbers(n, stages), lambda n: _repvgg_stage_names(n, stages),
                        REPVGG_PRIMITIVES)


TORCHVISION = {
    **{f"resnet{d}": Architecture(f"resnet{d}", RESNET_RULES) for d in (18, 34, 50)},
    "mobilenet_v2": Architecture("mobilenet_v2", MOBILENET_V2_RULES),
}
TIMM = {
    **{f"resnet{d}": Architecture(f"resnet{d}", RESNET_RULES) for d in (18, 34, 50)},
    **{f"repvgg_{v}": _repvgg(v) for v in REPVGG_CONFIGS},
}
SOURCES = {"torchvision": TORCHVISION, "timm": TIMM}


def architecture(source: str, name: str) -> Architecture:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {sorted(SOURCES)}")
    if name not in SOURCES[source]:
        raise ValueError(f"{source} {name!r} is not supported; supported: {sorted(SOURCES[source])}")
    return SOURCES[source][name]


def _import(arch: Architecture, state_dict, input_shape) -> Tuple[object, dict]:
    state_dict = load_state_dict(state_dict)
    renamed, original = {}, {}
    for name, value in state_dict.items():
        if name.endswith("num_batches_tracked"):
            continue
        zoo_name = arch.zoo_name_of(name)
        renamed[zoo_name], original[zoo_name] = value, name
    try:
        return _build(arch, renamed, input_shape)
    except StateDictMismatchError as err:  # say it in the checkpoint's own names
        def torch_name(path):
            return f"PyTorch name {arch.torch_name_of(names.flax_path_to_torch_name(tuple(path)))}"
        raise StateDictMismatchError(
            err.missing_paths, [original.get(n, n) for n in err.unexpected],
            [(original.get(n, n), shape, path, expected) for n, shape, path, expected in err.misshaped],
            torch_name) from None


def _build(arch: Architecture, renamed, input_shape) -> Tuple[object, dict]:
    model = create_model(arch.zoo_name, block=arch.block)
    model = model_at_widths(model, state_dict_param_shapes(renamed), input_shape)
    if arch.branch_mask is not None:
        reference = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                                   jax.ShapeDtypeStruct(input_shape, jnp.float32))
        layers = sorted({path[0] for path in traverse_util.flatten_dict(reference["params"]) if "_ops_2" in path})
        model = model.clone(branch_mask=tuple((layer, arch.branch_mask) for layer in layers))
    if arch.branch_mask is None:  # every variable comes from the checkpoint: shapes suffice
        reference = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                                   jax.ShapeDtypeStruct(input_shape, jnp.float32))
        return model, torch_to_flax(renamed, reference)
    initial = model.init(jax.random.key(0), jnp.zeros(input_shape, jnp.float32), train=False)
    return model, _fill_kept_primitives(renamed, initial, arch.branch_mask)


def _fill_kept_primitives(state_dict, initial, mask) -> dict:
    """Variables of a RepNAS model from a state_dict that holds only the primitives of
    ``mask`` (and the identities): the other primitives keep ``initial`` (never computed)."""
    flat = {(c,) + p: v for c in ("params", "batch_stats") for p, v in traverse_util.flatten_dict(initial[c]).items()}
    kept = {path: v for path, v in flat.items() if _is_kept(path, mask)}
    reference = {c: traverse_util.unflatten_dict({p[1:]: v for p, v in kept.items() if p[0] == c})
                 for c in ("params", "batch_stats")}
    loaded = torch_to_flax(state_dict, reference)
    merged = {**flat, **{(c,) + p: v for c in loaded for p, v in traverse_util.flatten_dict(loaded[c]).items()}}
    return {c: traverse_util.unflatten_dict({p[1:]: v for p, v in merged.items() if p[0] == c})
            for c in ("params", "batch_stats")}


def from_torchvision(name: str, state_dict, input_shape=(1, 224, 224, 3)):
    """``(model, variables)`` of a torchvision classification model's state_dict (a
    mapping or a ``.pth`` path), at the checkpoint's widths and class count."""
    return _import(architecture("torchvision", name), state_dict, input_shape)


def from_timm(name: str, state_dict, input_shape=(1, 224, 224, 3)):
    """``(model, variables)`` of a timm model's state_dict, as ``from_torchvision``."""
    return _import(architecture("timm", name), state_dict, input_shape)


def _deploy_conv_as_conv_bn(flat: Dict[Tuple[str, ...], np.ndarray]) -> Dict[Tuple[str, ...], np.ndarray]:
    """A deploy conv's ``conv/kernel`` + ``conv/bias`` as a bias-free conv and an identity
    BatchNorm carrying the bias (scale 1, mean 0, variance ``1 - eps``), as the PyTorch
    classes have conv-BN and no conv bias."""
    out = {}
    for path, value in flat.items():
        module, leaf = path[1:-1], path[-1]
        if module[-1:] == ("conv",) and leaf == "bias":
            layer = module[:-1]
            out[("params",) + layer + ("bn", "scale")] = np.ones_like(value)
            out[("params",) + layer + ("bn", "bias")] = value
            out[("batch_stats",) + layer + ("bn", "mean")] = np.zeros_like(value)
            out[("batch_stats",) + layer + ("bn", "var")] = np.full_like(value, 1 - BN_EPS)
        else:
            out[path] = value
    return out


def to_torchvision(name: str, variables, source: str = "torchvision") -> Dict[str, np.ndarray]:
    """The PyTorch state_dict (numpy arrays, the class's names and layouts) of a plain,
    deploy or pruned zoo network's ``variables``; a multi-branch network must be fused
    first (``fuse_params``), except a RepVGG (timm) in its train-time form."""
    arch = architecture(source, name)
    flat = traverse_util.flatten_dict(jax.device_get(dict(variables)))
    flat = {path: np.asarray(value) for path, value in flat.items() if path[0] in ("params", "batch_stats")}
    if arch.branch_mask is None:
        branched = sorted({"/".join(p[1:-2]) for p in flat if any(s.startswith(("dbb_", "_ops_")) for s in p)})
        if branched:
            raise ValueError(f"{name} variables still have multi-branch blocks ({', '.join(branched[:3])}, ...): "
                             "fuse them first with nas_jax.fuse_params (or `nas-jax fuse`)")
        flat = _deploy_conv_as_conv_bn(flat)
    state_dict = {}
    for path, value in flat.items():
        zoo_name, array = names.flax_tensor_to_torch(path, value)
        if arch.branch_mask is not None and not _is_kept(path, arch.branch_mask):
            continue
        state_dict[arch.torch_name_of(zoo_name)] = np.ascontiguousarray(array)
    return state_dict


def to_timm(name: str, variables) -> Dict[str, np.ndarray]:
    """``to_torchvision`` for the timm classes."""
    return to_torchvision(name, variables, source="timm")


def _is_kept(path, mask) -> bool:
    ops = [p for p in path if p.startswith("_ops_")]
    return not ops or mask[int(ops[0][len("_ops_"):])]


def resize_torch_module(module, state_dict) -> None:
    """Resizes, in place, every ``Conv2d``, ``BatchNorm2d`` and ``Linear`` of a PyTorch
    ``module`` to the shapes of ``state_dict`` (a pruned network), keeping each layer's
    stride, padding and groups (a depthwise conv keeps ``groups == channels``); then
    ``module.load_state_dict(state_dict, strict=True)`` loads it."""
    import torch

    for module_name, child in list(module.named_modules()):
        prefix = f"{module_name}." if module_name else ""
        weight = state_dict.get(prefix + "weight")
        if weight is None:
            continue
        shape = tuple(np.shape(weight))
        if isinstance(child, torch.nn.Conv2d):
            depthwise = child.groups == child.in_channels == child.out_channels and child.groups > 1
            groups = shape[0] if depthwise else child.groups
            replacement = torch.nn.Conv2d(shape[1] * groups, shape[0], child.kernel_size, child.stride,
                                          child.padding, child.dilation, groups, child.bias is not None)
        elif isinstance(child, torch.nn.BatchNorm2d):
            replacement = type(child)(shape[0], child.eps, child.momentum)
        elif isinstance(child, torch.nn.Linear):
            replacement = torch.nn.Linear(shape[1], shape[0], child.bias is not None)
        else:
            continue
        parent_name, _, attribute = module_name.rpartition(".")
        setattr(module.get_submodule(parent_name) if parent_name else module, attribute, replacement)
