"""`smoe` command line: thin wrappers; each subcommand lives next to the code it drives."""

from __future__ import annotations

import argparse
import sys

from smoe.errors import UserError


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smoe", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    # Registration imports must stay jax-free: subcommands import jax lazily in their handlers.
    from theory import cli as theory_cli
    from smoe import train_cli
    from smoe.data import cli as data_cli
    from smoe.fit import cli as fit_cli
    from smoe.measure import cli as measure_cli
    from smoe.quality import cli as quality_cli
    from smoe.sparsity import cli as sparsity_cli
    from smoe.sweep import cli as sweep_cli

    for module in (data_cli, train_cli, measure_cli, quality_cli, sparsity_cli, sweep_cli, fit_cli, theory_cli):
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"smoe: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        # theory raises ValueError subclasses for bad input; it must not depend on smoe.
        from theory.errors import InputError

        if not isinstance(err, InputError):
            raise
        print(f"smoe {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
