"""Registers the sweep kind `train` and `smoe quality report DIR`: tables, loss laws and figures.

Importing this module registers the kind; it stays jax-free (the heuristic counts FLOPs with the
jax-free smoe.accounting), and the trainer is imported only when a point runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from smoe import atomic
from smoe.accounting import params_total
from smoe.errors import UserError
from smoe.quality.heuristic import config_for_budget, point_from_dict, train_flops
from smoe.sweep.kinds import SweepKind, register_kind
from smoe.sweep.store import ResultStore


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("quality", help="report a `kind: train` sweep: tables, loss laws, figures",
                                   description=__doc__)
    actions = parser.add_subparsers(dest="quality_command", required=True)
    report = actions.add_parser("report", help="write results.md, fits.json, CSVs and PNGs for a sweep DIR")
    report.add_argument("directory", help="the sweep's --out DIR")
    report.add_argument("--out", metavar="DIR",
                        help="where to write (default: the sweep DIR, whose report files are regenerated); "
                             "report files already in another DIR are replaced only with --force")
    report.add_argument("--force", action="store_true", help="replace report files already in --out DIR")
    report.add_argument("--quiet", action="store_true",
                        help="no bootstrap progress bar (it shows on stderr only when that is a terminal)")
    report.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates for the law intervals")
    report.set_defaults(func=_report)
    routing = actions.add_parser("routing", help="draw a token-routed run's expert load and k per layer over "
                                 "training, from its metrics.jsonl")
    routing.add_argument("run_dir", help="a `smoe train` run directory")
    routing.add_argument("--out", metavar="PNG", help="where to write (default: RUN_DIR/routing.png)")
    routing.add_argument("--title", default="", help="figure title")
    routing.set_defaults(func=_routing)


def _train_point(point) -> dict:
    from smoe.quality.point import run_train_point

    return run_train_point(resolve_lr(point))


def resolve_lr(point):
    """The point with lr_scale taken from its lr_from sweep, if it names one."""
    from smoe.quality.verdicts import lr_scale_from

    if not point.lr_from:
        return point
    return dataclasses.replace(point, lr_scale=lr_scale_from(point.lr_from, point.label, point.d_model))


def parse_train_point(raw: dict):
    """A QualityPoint whose budget gives a valid run config (checked here, before anything trains)."""
    point = point_from_dict(raw)
    config_for_budget(point)
    return point


def point_size(point) -> dict:
    cfg = config_for_budget(point)
    return {"params": params_total(cfg.model), "train_flops": train_flops(cfg), "steps": cfg.train.steps}


def prepare_train_points(points: list) -> None:
    """The corpus and every lr_from choice must be there before the first point trains."""
    import jax

    for point in points:
        resolve_lr(point)

    from smoe.data import REGISTRY, cache_root, fetch

    corpora = {point.corpus for point in points}
    for corpus in sorted(corpora & set(REGISTRY)):
        fetch(corpus)
    # The seeds of one setting compile identical programs; a persistent cache compiles them once,
    # saving ~10 s of XLA time per repeated point on CPU. Compiled code, and so every loss, is unchanged.
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(cache_root() / "jax-compilation"))


register_kind("train", SweepKind(run=_train_point, parse=parse_train_point, prepare=prepare_train_points,
                                size=point_size))


def _report(args: argparse.Namespace) -> int:
    if args.bootstrap < 0:
        raise UserError(f"--bootstrap: must be >= 0, got {args.bootstrap}")
    print(write_report(Path(args.directory), Path(args.out or args.directory), args.bootstrap, args.force,
                       progress=not args.quiet))
    return 0


def _routing(args: argparse.Namespace) -> int:
    from smoe.quality.routing_figure import routing_figure

    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / "routing.png"
    series = routing_figure(run_dir, out, args.title)
    for layer, mean_k in zip(series["layers"], series["mean_k"]):
        print(f"layer {layer}: mean k {mean_k[0]:.3f} at step {series['steps'][0]} -> {mean_k[-1]:.3f} "
              f"at step {series['steps'][-1]}")
    print(f"wrote {out}")
    return 0


# What report.settings groups and labels a trained point by.
REPORT_FIELDS = frozenset({"budget", "label", "d_model", "family", "n_experts", "shorten", "seed"})


REPORT_FILES = ("results.csv", "results.md", "fits.json", "clark_*.csv", "iso_flop.png", "loss_vs_e.png")


def write_report(directory: Path, out: Path, bootstrap: int, force: bool = False, progress: bool = True) -> str:
    """Writes REPORT_FILES into `out`, each atomically; returns results.md. Inside the sweep directory they
    are derived files and are regenerated; in a directory of the user's own, existing ones need `force`."""
    from smoe.fit import loss_laws
    from smoe.quality import figures, report, verdicts

    with ResultStore(directory, create=False) as store:
        rows = store.rows()
        if not rows:
            raise UserError(f"quality report: {directory} has no finished points yet; run the sweep first")
        missing = sorted(REPORT_FIELDS - set(rows[0]))
        if missing:
            raise UserError(f"quality report: the points in {directory} lack {', '.join(missing)}: it holds a "
                            f"`kind: {store.kind()}` sweep, not `kind: train`; for timing sweeps use `smoe fit {directory}`")
        if out.exists() and not out.is_dir():
            raise UserError(f"quality report: --out {out} is a file, not a directory; choose another --out")
        taken = [] if force or out.resolve() == directory.resolve() else sorted(
            path.name for pattern in REPORT_FILES for path in out.glob(pattern))
        if taken:
            raise UserError(f"quality report: --out {out} already holds {', '.join(taken)}; pass --force to "
                            f"replace them or choose another --out")
        every_lr = report.settings(rows)
        all_settings = report.best_lr(every_lr)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"quality report: cannot create {out} ({err.strerror}); choose a writable --out") from None
        store.export_csv(out / "results.csv")
    budgets = sorted({s.budget for s in all_settings})
    comparisons = [report.compare_budget(all_settings, budget) for budget in budgets]
    clark = {}
    for (budget, shorten), group in sorted(loss_laws.clark_groups(all_settings).items()):
        csv_path = out / f"clark_C{budget:.3g}_r{shorten}.csv"
        loss_laws.write_clark_csv(group, csv_path)
        clark[csv_path.name] = loss_laws.fit_clark_group(group, bootstrap, progress)
    budget_law = loss_laws.fit_budget_law(all_settings, bootstrap)
    effects = {budget: verdicts.effects(all_settings, budget) for budget in budgets}
    lr = verdicts.lr_choices(every_lr)
    atomic.write_text(out / "fits.json", json.dumps(
        {"clark": clark, "loss_vs_budget": budget_law, "lr_choice": lr,
         "effects": [e.as_json() for found in effects.values() for e in found]}, indent=2) + "\n")
    figures.iso_flop_figure(all_settings, out / "iso_flop.png")
    figures.loss_vs_e_figure(all_settings, out / "loss_vs_e.png")
    text = report.markdown(all_settings, comparisons, clark, budget_law, directory,
                           {budget: [e.line() for e in found] for budget, found in effects.items()},
                           verdicts.lr_table(lr, every_lr))
    atomic.write_text(out / "results.md", text)
    return text
