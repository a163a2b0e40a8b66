"""``nas-jax parity FILE.npz...``: the JAX blocks and models against golden files made by
the official PyTorch code (``nas_jax.interop.parity``), one row per file."""
from __future__ import annotations

from typing import Optional

HELP = "check JAX blocks and models against golden .npz files made by the official PyTorch code"


def add_arguments(parser):
    from nas_jax.interop.parity import TOLERANCE

    parser.add_argument("files", nargs="+", metavar="FILE.npz", help="golden parity files")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"largest relative L2 error that passes (default {TOLERANCE:g})")


def _format_error(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2e}"


def run(args) -> int:
    """Prints one row per file (errors, PASS/FAIL, the reason indented below a failure),
    then ``N passed, M failed``; returns 1 if any file failed."""
    from nas_jax.interop.parity import check_golden_file

    width = max(len("file"), *(len(str(f)) for f in args.files))
    row = f"{{:<{width}}}  {{:<15}}  {{:>9}}  {{:>9}}  {{:>9}}  {{}}"
    print(row.format("file", "kind", "eval", "fused", "kernels", "result"), flush=True)
    failed = 0
    for path in args.files:
        result = check_golden_file(path, args.tolerance)
        failed += not result.passed
        print(row.format(str(path), result.kind or "-", _format_error(result.eval_error),
                         _format_error(result.fused_error), _format_error(result.kernel_error),
                         "PASS" if result.passed else "FAIL"), flush=True)
        if not result.passed:
            print("\n".join(f"    {line}" for line in result.reason.splitlines()), flush=True)
    print(f"{len(args.files) - failed} passed, {failed} failed")
    return 1 if failed else 0
