"""The ``nas-jax`` command line: a thin dispatcher over the library.

Each subcommand is a module of ``nas_jax/commands`` (named as the command), which defines
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int`` (the exit status)
and imports the library inside ``run``, so that ``nas-jax --help`` starts fast. A subcommand that
takes ``--config.key=value`` overrides sets ``parser.set_defaults(takes_config_overrides=True)``
and finds them, in order, in ``args.config_overrides``. A command reports bad input by
raising one of ``USER_ERRORS``, which ``main`` prints as ``error: ...`` on stderr with exit
status 2. The commands that compute join a multi-process job first (``nas_jax.distributed``: ``--coordinator_address``,
``--num_processes``, ``--process_id`` anywhere on the line, or a cluster JAX detects).
"""
from __future__ import annotations

import argparse
import importlib
import sys

CONFIG_OVERRIDE_PREFIX = "--config."

# subcommand -> its module in nas_jax/commands (``import`` is ``import_``: a keyword)
COMMANDS = {name: f"nas_jax.commands.{name}{'_' if name == 'import' else ''}" for name in (
    "train", "eval", "fuse", "bench", "repnas", "prune", "parity", "import", "export")}
COMPUTING = ("train", "eval", "fuse", "bench", "repnas", "prune")
# what a command raises for bad input (a config key, a file, a model, a budget): reported
# here as one line and exit status 2; anything else is a bug and keeps its traceback
USER_ERRORS = (ValueError, NotImplementedError, FileNotFoundError, ImportError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas-jax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    from nas_jax import distributed
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        argv, job = distributed.split_flags(argv)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    overrides = [a for a in argv if a.startswith(CONFIG_OVERRIDE_PREFIX)]
    parser = build_parser()
    args = parser.parse_args([a for a in argv if not a.startswith(CONFIG_OVERRIDE_PREFIX)])
    if overrides and not getattr(args, "takes_config_overrides", False):
        parser.error(f"{args.command} takes no {CONFIG_OVERRIDE_PREFIX}key=value overrides: {overrides}")
    args.config_overrides = overrides
    if job and args.command not in COMPUTING:
        parser.error(f"{args.command} runs in one process; {', '.join(distributed.FLAGS)} apply to "
                     f"{', '.join(COMPUTING)}")
    try:
        if args.command in COMPUTING:
            distributed.initialize(job)
        return int(args._run(args) or 0)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
