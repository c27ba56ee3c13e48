"""One measurement point -> one flat, JSON-able record (and the same for its baselines)."""

from __future__ import annotations

import os
import platform

import jax

from smoe.measure import analysis, point as points
from smoe.measure.programs import build_programs
from smoe.measure.timing import time_fn

DEFAULT_REPEATS = 5
BASELINE_KINDS = ("dense", "topk")


def context() -> dict:
    """Where the numbers came from; timings only compare within one context."""
    return {
        "backend": jax.default_backend(),
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "jax_version": jax.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def _measure_kind(point: dict, repeats: int) -> dict:
    """`program.field` entries for every program of one model kind, plus its analytic FLOPs."""
    cfg = points.to_config(point)
    forward_flops = analysis.analytic_flops(cfg.model, cfg.train.batch_size)
    out = {"analytic_flops.forward": forward_flops,
           "analytic_flops.train_step": analysis.TRAIN_FLOPS_PER_FORWARD * forward_flops}
    if cfg.model.kind == "sectional":
        paper = analysis.paper_cost_flops(cfg.model, cfg.train.batch_size)
        out |= paper | {"theory.fraction_of_analytic_forward": sum(paper.values()) / forward_flops}
    for name, program in build_programs(cfg).items():
        timing = time_fn(program.run, repeats=repeats)
        fields = {"median_s": timing["median_s"], "samples_s": timing["samples_s"],
                  **analysis.xla_cost(program.compiled), **analysis.xla_memory(program.compiled),
                  **{f"collectives.{op}": n for op, n in analysis.collective_counts(program.compiled).items()}}
        out |= {f"{name}.{key}": value for key, value in fields.items()}
    return out


def measure_point(point: dict, repeats: int = DEFAULT_REPEATS) -> dict:
    """Point fields at the top level, then `program.field`, `baseline.KIND.program.field` and ratios.

    With `baselines: true` the dense and top-k models of the same size are measured in the same
    process, so the sectional/dense ratios do not mix machines or load conditions.
    """
    full = points.normalize(point)
    record = dict(full) | context() | _measure_kind(full, repeats)
    if full.get("baselines"):
        for kind in BASELINE_KINDS:
            if kind == full["kind"]:
                continue
            other = _measure_kind(points.baseline(full, kind), repeats)
            record |= {f"baseline.{kind}.{key}": value for key, value in other.items()}
        dense = "" if full["kind"] == "dense" else "baseline.dense."
        record["ratio.step_time_over_dense"] = record["train_step.median_s"] / record[f"{dense}train_step.median_s"]
        record["ratio.flops_over_dense"] = (record["analytic_flops.forward"]
                                            / record[f"{dense}analytic_flops.forward"])
    return record


def run_measure_point(point: dict) -> dict:
    """Sweep-point form: the repeat count travels inside the point; `processes: N` > 1 measures
    with N local processes joined by jax.distributed (real inter-process collectives)."""
    point = points.normalize(point)
    repeats = point.pop("repeats", DEFAULT_REPEATS)
    if point.get("processes", 1) > 1:
        from smoe.measure.worker import measure_in_processes

        return measure_in_processes(point, repeats)
    return measure_point(point, repeats)
