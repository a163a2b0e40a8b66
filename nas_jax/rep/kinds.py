"""The block kinds: one row per kind, the one place that says which kinds exist.

A model built with ``nas_jax.models.conv_block`` turns each conv-BN layer into the module
of its ``block`` kind where the kind applies to the layer's kernel size, and into a plain
``ConvBN`` elsewhere. Everything that cares about kinds reads ``KINDS``: ``conv_block``
(which module), ``fuse_params`` (which modules fuse), the pruning graph (which modules are
one layer), the RepNAS search (which kinds are supernets, which are online), the CLI's
``--block`` choices and the table in ``docs/custom_models.md`` (a test keeps it equal to
``markdown_table()``). Adding a kind is one row.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from nas_jax.rep.blocks import ConvBN, DeployConv, DiverseBranchBlock, RepNASBlock
from nas_jax.rep.online import OnlineDBB, OnlineRepNASBlock


@dataclasses.dataclass(frozen=True)
class BlockKind:
    """One block kind.

    module: the class a conv-BN layer becomes where ``applies(kernel_size)``; a searchable
      kind's class is built as ``module(features, strides, groups, static_mask)`` (always
      3x3), any other as ``module(features, kernel_size, strides, padding, groups)``.
    multi_branch: trains with several branches and fuses into one conv (``fuse_params``).
    searchable: a RepNAS supernet kind (a branch mask per layer, searched alphas).
    online: the branches collapse into one kernel at every training step.
    """
    name: str
    module: type
    applies: Callable[[int], bool]
    multi_branch: bool
    searchable: bool
    online: bool
    summary: str

    @property
    def fixed_kernel_size(self) -> Optional[int]:
        """The kernel size every layer of this kind has (3 for the RepNAS kinds), else None."""
        return 3 if self.searchable else None


def _any_kernel(k: int) -> bool:
    return True


def _dbb_kernel(k: int) -> bool:
    return 1 < k < 7  # the official DBB rule


def _repnas_kernel(k: int) -> bool:
    return k == 3


KINDS = {kind.name: kind for kind in (
    BlockKind("plain", ConvBN, _any_kernel, False, False, False, "conv then BatchNorm"),
    BlockKind("dbb", DiverseBranchBlock, _dbb_kernel, True, False, False,
              "Diverse Branch Block: KxK, 1x1, 1x1-avg-pool and 1x1-KxK branches, each with BN"),
    BlockKind("orepa", OnlineDBB, _dbb_kernel, True, False, True,
              "the DBB's branches collapsed into one kernel at every step (same layers as dbb)"),
    BlockKind("repnas", RepNASBlock, _repnas_kernel, True, True, False,
              "RepNAS block: six primitives and a BN identity, a branch mask per layer"),
    BlockKind("repnas_online", OnlineRepNASBlock, _repnas_kernel, True, True, True,
              "the RepNAS block's branches collapsed into one kernel at every step"),
    BlockKind("deploy", DeployConv, _any_kernel, False, False, False,
              "one conv with bias: what every kind fuses into"),
)}

BLOCK_KINDS = tuple(KINDS)
MULTI_BRANCH_KINDS = tuple(k.name for k in KINDS.values() if k.multi_branch)
SEARCHABLE_KINDS = tuple(k.name for k in KINDS.values() if k.searchable)
# every module a kind builds (a model's conv-BN layers) and those fuse_params folds
BLOCK_MODULES = tuple(dict.fromkeys(k.module for k in KINDS.values()))
FUSABLE_MODULES = (ConvBN,) + tuple(k.module for k in KINDS.values() if k.multi_branch)


def block_kind(name: str) -> BlockKind:
    """The row of kind ``name``; a ``ValueError`` listing the kinds for an unknown one."""
    if name not in KINDS:
        raise ValueError(f"unknown block kind {name!r}; choose one of {BLOCK_KINDS}")
    return KINDS[name]


def kind_of_module(module) -> Optional[BlockKind]:
    """The kind whose module ``module`` is an instance of, else None."""
    return next((k for k in KINDS.values() if isinstance(module, k.module)), None)


def markdown_table() -> str:
    """The kinds as a markdown table (the one in ``docs/custom_models.md``)."""
    rules = {_any_kernel: "any K", _dbb_kernel: "1 < K < 7", _repnas_kernel: "K = 3"}
    mark = lambda b: "yes" if b else ""  # noqa: E731
    rows = ["| kind | module | applies to | multi-branch | RepNAS search | online | what it is |",
            "|---|---|---|---|---|---|---|"]
    rows += [f"| `{k.name}` | `{k.module.__name__}` | {rules[k.applies]} | {mark(k.multi_branch)} | "
             f"{mark(k.searchable)} | {mark(k.online)} | {k.summary} |" for k in KINDS.values()]
    return "\n".join(rows)
