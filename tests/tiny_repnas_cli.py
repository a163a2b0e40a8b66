"""``nas-jax`` with the tests' tiny RepNAS backbone (``repnas_helpers.TinyNet``: four conv
layers) registered as zoo model ``tiny``; the multi-process tests start it as
``python tests/tiny_repnas_cli.py repnas --config.model=tiny ...``."""
import sys

from nas_jax.cli import main
from nas_jax.models import MODELS
from repnas_helpers import TinyNet


def tiny(num_classes=10, block="repnas", width=1.0, dtype=None, branch_mask=()):
    return TinyNet(num_classes, block, branch_mask)


if __name__ == "__main__":
    MODELS["tiny"] = tiny
    sys.exit(main())
