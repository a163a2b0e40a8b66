"""The JAX blocks and models against golden files made by the official PyTorch code
(format: ``shared/parity/README.md``); ``check_golden_file`` checks one (the command is
``nas-jax parity``).

For each file: the training-time state_dict ``sd/*`` is converted with ``torch_to_flax``
and the eval-mode output must match ``y_eval``; the structure is then fused (a block's
``fuse`` into a ``DeployConv``, a model's ``fuse_params``) and the fused tensors must match
the official deploy state_dict ``deploy/*`` (where the file has one) and the fused output
``y_deploy`` (``y_eval`` where the file has none). Inputs ``x`` are NCHW, run as NHWC.
Every error is a relative L2 error ``||ours - official|| / ||official||`` computed in
float32 at the highest matmul precision.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import re
from typing import Any, Callable, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from nas_jax.common import RUN_ONCE_COMPILER_OPTIONS
from nas_jax.interop.widths import model_at_widths, state_dict_param_shapes
from nas_jax.interop.torch_state_dict import (StateDictMismatchError, load_state_dict, split_repnas_supernet,
                                              torch_to_flax)
from nas_jax.models.mobilenet import MOBILENET_V1_CHANNELS, MobileNetV1
from nas_jax.models.resnet import ResNet
from nas_jax.rep.blocks import OFFICIAL_PRIMITIVES, DeployConv, DiverseBranchBlock, RepNASBlock
from nas_jax.rep.fuse import deploy_form, fuse_params

TOLERANCE = 1e-5
RESNET_BLOCKS = {"BasicBlock": False, "Bottleneck": True}  # official block class -> bottleneck
_OFFICIAL_DEPLOY_CONV = re.compile(r"(^|\.)dbb_reparam\.")  # the official DBB deploy conv; ours is `conv`
# Each program runs once or twice, so compile time dominates (about half of it saved on CPU).
_run_once = functools.partial(jax.jit, static_argnums=(0, 1), compiler_options=RUN_ONCE_COMPILER_OPTIONS)


class GoldenFileError(Exception):
    """A golden file that cannot be checked: unreadable, foreign, or an unsupported config."""


@dataclasses.dataclass(frozen=True)
class ParityResult:
    """The outcome for one golden file; an error is None where it was not reached."""
    path: str
    kind: Optional[str] = None
    eval_error: Optional[float] = None  # eval output vs y_eval
    fused_error: Optional[float] = None  # fused output vs y_deploy (else y_eval)
    kernel_error: Optional[float] = None  # max over the deploy/ tensors; None without deploy/ keys
    reason: Optional[str] = None  # why it failed; None when it passed

    @property
    def passed(self) -> bool:
        return self.reason is None


@dataclasses.dataclass(frozen=True)
class GoldenFile:
    """A golden file's ``meta.kind``, ``meta.config`` and arrays (``x`` NCHW, ``sd/*``, ...)."""
    kind: str
    config: Mapping[str, Any]
    arrays: Mapping[str, np.ndarray]  # every array of the .npz, by key

    def prefixed(self, prefix: str) -> dict:
        """``{name: array}`` of the keys under ``prefix`` (``sd/``, ``deploy/``), prefix removed."""
        return {k[len(prefix):]: v for k, v in self.arrays.items() if k.startswith(prefix)}


def _identity(y):
    return y


def _unchanged(state_dict):
    return state_dict


@_run_once
def _fuse_block(block, input_shape, variables):
    """A block's variables (with RepNAS ``branch_weights`` if any) -> its ``DeployConv``'s."""
    weights = {"branch_weights": variables["branch_weights"]["w"]} if "branch_weights" in variables else {}
    kernel, bias = block.fuse(variables, input_shape[-1], **weights)
    return {"params": {"conv": {"kernel": kernel, "bias": bias}}}


@_run_once
def _fuse_model(model, input_shape, variables):
    """A zoo model's variables -> its deploy form's (``fuse_params``)."""
    return fuse_params(model, variables, input_shape=input_shape)[1]


@_run_once
def _forward(module, activation, variables, x):
    """``activation(module(x))`` in eval mode. Modules are static (hashed by value), so files
    of one architecture share the compiled program."""
    return activation(module.apply(variables, x, train=False))


@dataclasses.dataclass(frozen=True)
class _Subject:
    """What a golden file describes, in Flax.

    module: the training-time structure (NHWC in); deploy: the module it fuses into;
    fuse: ``(module, input_shape, variables) -> deploy variables``; activation: the
    official nonlinearity after either; extra_variables: collections that are not in a
    state_dict; prepare: drops what the state_dict holds beyond the module's tensors.
    """
    module: nn.Module
    deploy: nn.Module
    fuse: Callable = _fuse_block
    activation: Callable = _identity
    extra_variables: Mapping = dataclasses.field(default_factory=dict)
    prepare: Callable = _unchanged


def relative_l2(ours, official) -> float:
    """``||ours - official|| / ||official||`` in float64 (0 or inf when ``official`` is zero)."""
    ours, official = np.asarray(ours, np.float64), np.asarray(official, np.float64)
    if ours.shape != official.shape:
        raise GoldenFileError(f"shape {ours.shape} does not match the official {official.shape}")
    diff, norm = np.linalg.norm(ours - official), np.linalg.norm(official)
    if norm == 0:
        return 0.0 if diff == 0 else float("inf")
    return float(diff / norm)


def read_golden_file(path) -> GoldenFile:
    """The golden file at ``path``; ``GoldenFileError`` if it is unreadable or not one."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise GoldenFileError("not an .npz archive")
        with archive:
            arrays = {k: archive[k] for k in archive.files}
    except GoldenFileError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to read is this row's failure
        raise GoldenFileError(f"unreadable: {type(err).__name__}: {err}") from None
    if "meta" not in arrays:
        raise GoldenFileError("no 'meta' key: not a golden parity file")
    try:
        meta = json.loads(str(arrays["meta"]))
    except json.JSONDecodeError as err:
        raise GoldenFileError(f"'meta' is not JSON: {err}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config", {}), dict):
        raise GoldenFileError("'meta' is not a JSON object with a 'config' object")
    kind = meta.get("kind")
    if kind not in BUILDERS:
        raise GoldenFileError(f"unknown kind {kind!r}; expected one of {sorted(BUILDERS)}")
    absent = [k for k in ("x", "y_eval") if k not in arrays] + \
             ([] if any(k.startswith("sd/") for k in arrays) else ["sd/*"])
    if absent:
        raise GoldenFileError(f"no {', '.join(absent)} in the file")
    return GoldenFile(kind, meta.get("config", {}), arrays)


def _need(config, key):
    """``config[key]``, or a ``GoldenFileError`` naming the absent key."""
    if key not in config:
        raise GoldenFileError(f"config has no {key!r}")
    return config[key]


def _activation(config):
    """The official ``nonlinear``: None (identity) or ReLU."""
    nonlinear = config.get("nonlinear")
    if nonlinear is None:
        return _identity
    if str(nonlinear).lower().rstrip("()") == "relu":
        return nn.relu
    raise GoldenFileError(f"unsupported nonlinear {nonlinear!r}")


def _dbb_block(golden: GoldenFile) -> _Subject:
    """One official ``DiverseBranchBlock``."""
    c = golden.config
    if c.get("dilation", 1) != 1:
        raise GoldenFileError(f"dilation {c['dilation']} is not supported")
    size, stride, groups, out = (_need(c, k) for k in ("kernel_size", "stride", "groups", "out_channels"))
    padding = c.get("padding", size // 2)
    block = DiverseBranchBlock(out, size, stride, padding, groups, c.get("internal_channels_1x1_3x3"))
    return _Subject(block, DeployConv(out, size, stride, padding, groups), activation=_activation(c))


def _repnas_mixedop(golden: GoldenFile) -> _Subject:
    """One official RepNAS ``MixedOp``: its mask values weight the six primitives."""
    c = golden.config
    primitives = tuple(c.get("primitives", OFFICIAL_PRIMITIVES))
    if primitives != OFFICIAL_PRIMITIVES:
        raise GoldenFileError(f"primitives {primitives} are not the official {OFFICIAL_PRIMITIVES}")
    mask = c["mask"] if "mask" in c else golden.arrays.get("mask")
    if mask is None or np.shape(mask) != (len(OFFICIAL_PRIMITIVES),):
        raise GoldenFileError(f"needs a mask of {len(OFFICIAL_PRIMITIVES)} values, got {mask!r}")
    weights = np.asarray(mask, np.float32)
    out, stride, groups = (_need(c, k) for k in ("out_channels", "stride", "groups"))
    block = RepNASBlock(out, stride, groups, tuple(bool(w) for w in weights))
    return _Subject(block, DeployConv(out, 3, stride, 1, groups), activation=_activation(c),
                    extra_variables={"branch_weights": {"w": jnp.asarray(weights)}},
                    prepare=lambda state_dict: split_repnas_supernet(state_dict)[0])


def _mobilenet_v1_channels(model, input_shape):
    """The official ``channels`` list of a Flax MobileNetV1: ``conv1``'s width, then each
    ``stem_i`` block's depthwise and pointwise widths (read off its deploy form)."""
    params = jax.eval_shape(deploy_form(model).init, jax.random.key(0),
                            jax.ShapeDtypeStruct(input_shape, jnp.float32))["params"]
    num_blocks = sum(name.startswith("stem_") for name in params)
    return [params["conv1"]["conv"]["kernel"].shape[-1]] + [
        params[f"stem_{i}"][layer]["conv"]["kernel"].shape[-1]
        for i in range(num_blocks) for layer in ("depthwise", "pointwise")]


def _dbb_model(golden: GoldenFile) -> _Subject:
    """An official DBB ResNet (BasicBlock / Bottleneck) or MobileNetV1, block='dbb'."""
    c = golden.config
    arch, num_classes = _need(c, "arch"), _need(c, "num_classes")
    if str(arch).startswith("ResNet"):
        block = _need(c, "block")
        if block not in RESNET_BLOCKS:
            raise GoldenFileError(f"unknown ResNet block {block!r}; expected one of {sorted(RESNET_BLOCKS)}")
        model = ResNet(stage_sizes=tuple(_need(c, "num_blocks")), bottleneck=RESNET_BLOCKS[block],
                       num_classes=num_classes, width=float(c.get("width_multiplier", 1.0)), block="dbb")
    elif arch == "MobileNetV1":
        channels = list(_need(c, "channels"))
        model = MobileNetV1(num_classes=num_classes, width=channels[0] / MOBILENET_V1_CHANNELS[0], block="dbb")
    else:
        raise GoldenFileError(f"unknown arch {arch!r}; expected ResNet-* or MobileNetV1")
    # any per-layer channel list: the widths are the tensors' (the official code takes a free list)
    input_shape = golden.arrays["x"].transpose(0, 2, 3, 1).shape
    model = model_at_widths(model, state_dict_param_shapes(golden.prefixed("sd/")), input_shape)
    if arch == "MobileNetV1":
        widths = _mobilenet_v1_channels(model, input_shape)
        if widths != channels:
            raise GoldenFileError(f"config channels {channels} disagree with the tensors' widths {widths}")
    return _Subject(model, deploy_form(model), fuse=_fuse_model)


BUILDERS = {"dbb_block": _dbb_block, "repnas_mixedop": _repnas_mixedop, "dbb_model": _dbb_model}


def _nchw(y):
    y = np.asarray(y)
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


def _measure(golden: GoldenFile, errors: dict):
    """Fills ``errors`` (eval, fused, kernel) step by step, so a failure keeps what was reached."""
    subject = BUILDERS[golden.kind](golden)
    x = jnp.asarray(golden.arrays["x"].transpose(0, 2, 3, 1))
    reference = jax.eval_shape(subject.module.init, jax.random.key(0), x)
    variables = {**torch_to_flax(subject.prepare(load_state_dict(golden.prefixed("sd/"))), reference),
                 **subject.extra_variables}
    y_eval = _forward(subject.module, subject.activation, variables, x)
    errors["eval"] = relative_l2(_nchw(y_eval), golden.arrays["y_eval"])

    deploy_variables = subject.fuse(subject.module, x.shape, variables)
    y_fused = _forward(subject.deploy, subject.activation, deploy_variables, x)
    errors["fused"] = relative_l2(_nchw(y_fused), golden.arrays.get("y_deploy", golden.arrays["y_eval"]))

    official = {_OFFICIAL_DEPLOY_CONV.sub(r"\1conv.", k): v for k, v in golden.prefixed("deploy/").items()}
    if official:
        official = traverse_util.flatten_dict(torch_to_flax(official, deploy_variables)["params"])
        ours = traverse_util.flatten_dict(deploy_variables["params"])
        errors["kernel"] = max(relative_l2(ours[path], value) for path, value in official.items())


def check_golden_file(path, tolerance: float = TOLERANCE) -> ParityResult:
    """Checks one golden file; never raises for a bad file (the result says why it failed)."""
    errors, kind, reason = {}, None, None
    try:
        golden = read_golden_file(path)
        kind = golden.kind
        with jax.default_matmul_precision("highest"):
            _measure(golden, errors)
        too_large = [f"{name} error {value:.2e} >= {tolerance:g}" for name, value in errors.items()
                     if not value < tolerance]
        reason = "; ".join(too_large) or None
    except (GoldenFileError, StateDictMismatchError) as err:
        reason = str(err)
    except Exception as err:  # noqa: BLE001 - a row fails with its reason instead of a traceback
        reason = f"{type(err).__name__}: {err}"
    return ParityResult(str(path), kind, errors.get("eval"), errors.get("fused"), errors.get("kernel"), reason)
