"""`smoe sweep`: run a sweep config resumably, or report/export an existing sweep directory.

Imports stay jax-free; the point function for a kind is looked up only when a sweep runs."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from smoe.errors import UserError, interrupted
from smoe.sweep.kinds import kind_for
from smoe.sweep.runner import run_sweep
from smoe.sweep.spec import expand, load_spec, point_key
from smoe.sweep.store import DB_NAME, ResultStore


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep", help="run a resumable sweep, or show/export its results", description=__doc__,
        usage="smoe sweep CONFIG.yaml --out DIR [--quiet] | CONFIG.yaml --dry-run | --status DIR [--json] | "
              "--export DIR OUT.csv [--force]")
    parser.add_argument("config", nargs="?", help="sweep YAML (name, kind, base, grid, points, repeats)")
    parser.add_argument("--out", metavar="DIR", help="results directory; re-running resumes it")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate and list the points, their count and estimated size; run nothing")
    parser.add_argument("--status", metavar="DIR", help="print how many points are done/failed")
    parser.add_argument("--json", action="store_true", help="with --status: print JSON {total, done, failed}")
    parser.add_argument("--export", nargs=2, metavar=("DIR", "OUT_CSV"),
                        help="write done points to a CSV (an existing OUT_CSV is replaced only with --force)")
    parser.add_argument("--force", action="store_true", help="with --export: replace an existing OUT_CSV")
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                        help="no progress bar (it shows on stderr only when that is a terminal)")
    parser.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    modes = [name for name, given in (("CONFIG", args.config), ("--status", args.status), ("--export", args.export)) if given]
    if len(modes) != 1:
        raise UserError("sweep: give exactly one of CONFIG.yaml --out DIR, --status DIR, or --export DIR OUT.csv"
                        + (f" (got {' and '.join(modes)})" if modes else ""))
    if args.status:
        return _status(Path(args.status), args.json)
    if args.export:
        return _export(Path(args.export[0]), Path(args.export[1]), args.force)
    return _run(Path(args.config), args.out, progress=not args.quiet, dry_run=args.dry_run)


def _run(config: Path, out: str | None, progress: bool, dry_run: bool = False) -> int:
    if not out and not dry_run:
        raise UserError("sweep: --out DIR is required to run a sweep; pick a directory for results.sqlite")
    spec = load_spec(config)
    kind = kind_for(spec.kind)
    # Every point is converted and validated once, before anything is written.
    parsed = {point_key(point): kind.parse(point) for point in expand(spec)}
    if dry_run:
        print(_dry_run(spec.name, {key: kind.size(point) for key, point in parsed.items()}))
        return 0
    kind.prepare(list(parsed.values()))
    try:
        status = run_sweep(spec, out, lambda point: kind.run(parsed[point_key(point)]), progress=progress)
    except KeyboardInterrupt:
        done = 0
        if (Path(out) / DB_NAME).is_file():  # Ctrl-C may come before the store exists
            with ResultStore(out, create=False) as store:
                done = store.status()["done"]
        # Re-running the same command skips the done points and redoes the one cut off.
        interrupted(f"smoe sweep {shlex.quote(str(config))} --out {shlex.quote(out)}",
                    f"{done}/{len(parsed)} points kept in {out}")
    print(_summary(Path(out), status))
    if status["failed"]:
        with ResultStore(out, create=False) as store:
            for key, error in store.failures():
                print(f"  failed {key}: {error}")
        print("re-run the same command to retry the failed points")
        return 1
    return 0


def _status(directory: Path, as_json: bool) -> int:
    with ResultStore(directory, create=False) as store:
        status = store.status()
    if as_json:
        print(json.dumps({key: status[key] for key in ("total", "done", "failed")}))
    else:
        print(_summary(directory, status))
    return 0


def _export(directory: Path, out_csv: Path, force: bool) -> int:
    if not out_csv.parent.is_dir():
        raise UserError(f"sweep: cannot write {out_csv}: directory {out_csv.parent} does not exist")
    if out_csv.is_dir():
        raise UserError(f"sweep --export: {out_csv} is a directory; give a file name such as {out_csv / 'results.csv'}")
    if out_csv.exists() and not force:
        raise UserError(f"sweep --export: {out_csv} already exists; pass --force to replace it or choose another name")
    with ResultStore(directory, create=False) as store:
        count = store.export_csv(out_csv)
    print(f"wrote {count} rows to {out_csv}")
    return 0


def _dry_run(name: str, sizes: dict[str, dict]) -> str:
    lines = [f"{key}  " + "  ".join(f"{k}={v:.3g}" for k, v in size.items()) for key, size in sizes.items()]
    flops = [value for size in sizes.values() for key, value in size.items() if key.endswith("flops")]
    total = f"; {sum(flops):.3g} FLOPs in all" if flops else ""
    return "\n".join(lines + [f"sweep {name}: {len(sizes)} points{total} (dry run: nothing ran)"])


def _summary(directory: Path, status: dict[str, int]) -> str:
    return (f"sweep {directory}: {status['done']}/{status['total']} done, {status['failed']} failed, "
            f"{status['running']} running or interrupted")
