"""`smoe measure CONFIG.yaml [--set k=v ...] [--repeats N] [--json] [--distributed]`: time programs at each point.

CONFIG holds `points:` (a list of mappings) or one point as the top-level mapping. A point is a
partial run config (dotted `model.n_experts: 8`, nested `model: {...}` or bare `n_layers: 3`; short
aliases E, d, L, r, batch, mesh_data, mesh_expert) plus the measurement keys repeats, baselines,
devices, processes, experts, payloads (`experts: [1, 2, 4]` times all those E of one setting in
shuffled rounds with the dense baseline; the table shows one row per E). `--set E=8` overrides a key in every point. With `baselines: true` the dense and
top-k models of the same size are measured too, and the table shows sectional/dense step time next
to the FLOP-predicted ratio. `--distributed` (on a cluster, e.g. under `srun`): every process of the
allocation runs every point together (`jax.distributed.initialize()` finds them) and process 0 prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from smoe import accounting, launch
from smoe.config import load_yaml, parse_sets
from smoe.errors import UserError
from smoe.launch import emulate_cpu_devices
from smoe.measure.point import MeasurePoint, devices_needed, parse_point
from smoe.sweep.kinds import SweepKind, register_kind
from smoe.sweep.store import result_rows

PROGRAM_COLUMNS = ("train_step", "forward", "pre_expert", "experts", "exchange")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("measure", help="time train step, forward and sectional parts",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML with `points:` or a single point")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one point key in every point; repeatable")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per program (default: point's or 5)")
    parser.add_argument("--json", action="store_true", help="one JSON record per point instead of a table")
    parser.add_argument("--distributed", action="store_true",
                        help="on a cluster: jax.distributed.initialize() with auto-detection; process 0 prints")
    parser.set_defaults(func=run)


def _sweep_point(point: MeasurePoint) -> dict:
    from smoe.measure.record import run_measure_point

    return run_measure_point(point)


def prepare_points(points: list[MeasurePoint]) -> None:
    """Ask for enough emulated devices for the largest mesh; XLA reads the device-count flag when its
    CPU backend starts, so this runs before any jax call."""
    emulate_cpu_devices(devices_needed(points))


def point_size(point: MeasurePoint) -> dict:
    """A setting (`experts:`) shows its largest model's parameters and its E's train FLOPs summed."""
    configs = [member.config for member in point.members or (point,)]
    return {"params": max(accounting.params_total(cfg.model) for cfg in configs),
            "train_step_flops": sum(accounting.TRAIN_FLOPS_PER_FORWARD
                                    * accounting.analytic_flops(cfg.model, cfg.train.batch_size) for cfg in configs)}


register_kind("measure", SweepKind(run=_sweep_point, parse=parse_point, prepare=prepare_points, size=point_size))


def load_points(path: str, overrides: list[str]) -> list[MeasurePoint]:
    raw = load_yaml(path) or {}
    listed = raw.get("points") if isinstance(raw, dict) and "points" in raw else [raw]
    if not isinstance(listed, list) or not listed:
        raise UserError("config.points: must be a non-empty list of point mappings")
    parsed = dict(parse_sets(overrides))
    return [parse_point(dict(p) | parsed if isinstance(p, dict) else p) for p in listed]


def run(args: argparse.Namespace) -> int:
    if args.repeats is not None and args.repeats < 1:
        raise UserError(f"--repeats: must be >= 1, got {args.repeats}")
    todo = load_points(args.config, args.set)
    if args.distributed:
        if any(p.spec.processes > 1 for p in todo):
            raise UserError("--distributed: the cluster starts the processes; drop `processes:` from the points")
        launch.init_cluster()
    else:
        prepare_points(todo)
    import jax

    from smoe.measure.peak import matmul_peak_flops
    from smoe.measure.record import run_measure_point

    peak = None if args.json else matmul_peak_flops()
    printing = jax.process_index() == 0
    records = []
    for p in todo:
        if args.repeats:
            p = dataclasses.replace(p, spec=dataclasses.replace(p.spec, repeats=args.repeats))
        record = run_measure_point(p)
        if args.json and printing:
            print(json.dumps(record), flush=True)
        records += result_rows(record)
    if not args.json and printing:
        print(format_table(records, peak))
    return 0


def _ms(record: dict, key: str) -> str:
    return f"{1e3 * record[key]:.2f}" if key in record else "-"


def format_table(records: list[dict], peak_flops: float) -> str:
    """Median ms per program; `achieved` is analytic train-step FLOPs over its median time."""
    header = ["kind", "E", "d", "L", "r", "mesh", *(f"{c}_ms" for c in PROGRAM_COLUMNS),
              "dense_ms", "t/t_dense", "flops/flops_dense", "GFLOP/s", "of_peak"]
    rows = [header]
    for rec in records:
        achieved = rec["analytic_flops.train_step"] / rec["train_step.median_s"]
        ratio = lambda key: f"{rec[key]:.3f}" if key in rec else "-"  # noqa: E731
        rows.append([rec["kind"], str(rec["E"]), str(rec["d"]), str(rec["L"]), str(rec["r"]),
                     f"{rec['mesh_data']}x{rec['mesh_expert']}",
                     *(_ms(rec, f"{c}.median_s") for c in PROGRAM_COLUMNS),
                     _ms(rec, "baseline.dense.train_step.median_s"),
                     ratio("ratio.step_time_over_dense"), ratio("ratio.flops_over_dense"),
                     f"{achieved / 1e9:.2f}", f"{achieved / peak_flops:.1%}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    return "\n".join(lines) + f"\nmatmul peak (one device, fp32): {peak_flops / 1e9:.2f} GFLOP/s; " \
        "train FLOPs = 3 x analytic forward matmul FLOPs"
