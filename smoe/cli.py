"""`smoe` command line: thin wrappers; each subcommand lives next to the code it drives.

Failure contract: bad input ends in one line `smoe: error: ...` and exit 2, a diverged training run
in exit 3, Ctrl-C in one line `smoe: interrupted; resume with: ...` and exit 130. Anything else is
a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import shlex
import sys

from smoe.errors import UserError, report_interrupt


class _Parser(argparse.ArgumentParser):
    """argparse's own refusals (a missing or malformed argument) in the one error format."""

    def error(self, message: str):
        command = self.prog.removeprefix("smoe").strip()
        print(f"smoe: error: {command + ': ' if command else ''}{message}; see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(2)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="smoe", description=__doc__)
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
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = _build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except SystemExit as stop:
        # parse_args (2, or 0 for --help) and interrupted() (130) end this way; tests call main() in-process.
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except UserError as err:
        print(f"smoe: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Commands that keep state (train, sweep) name their own resume; the rest write atomically,
        # so running the same command again is the resume.
        return report_interrupt("smoe " + shlex.join(argv), "nothing was half-written")
    except ValueError as err:
        # theory raises ValueError subclasses for bad input; it must not depend on smoe.
        from theory.errors import InputError

        if not isinstance(err, InputError):
            raise
        # theory does not know which command called it; the prefix names it.
        print(f"smoe: error: {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
