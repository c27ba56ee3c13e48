"""One measurement point -> one flat, JSON-able record (and the same for its baselines)."""

from __future__ import annotations

import os
import platform
import statistics
import sys

import jax
from tqdm import tqdm

from smoe import accounting
from smoe.measure import analysis, point as points
from smoe.measure.point import MeasurePoint
from smoe.measure.programs import build_programs, exchange_program
from smoe.measure.timing import time_round_robin

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


def static_fields(cfg, payloads=(1,)) -> dict:
    """What one model kind's record holds besides timings: analytic (and the paper's) FLOPs, and
    what each timed exchange sends per device."""
    forward_flops = accounting.analytic_flops(cfg.model, cfg.train.batch_size)
    out = {"analytic_flops.forward": forward_flops,
           "analytic_flops.train_step": accounting.TRAIN_FLOPS_PER_FORWARD * forward_flops}
    if cfg.model.kind == "sectional":
        paper = accounting.paper_cost_flops(cfg.model, cfg.train.batch_size)
        out |= paper | {"theory.fraction_of_analytic_forward": sum(paper.values()) / forward_flops}
        for scale in sorted({1, *payloads}):
            traffic = accounting.exchange_traffic(cfg.model, cfg.train.batch_size, cfg.mesh.data, cfg.mesh.expert, scale)
            out |= {f"{exchange_program(scale)}.{key}": value for key, value in traffic.items()}
    return out


def program_fields(program, samples: list[float]) -> dict:
    return {"median_s": statistics.median(samples), "samples_s": samples,
            **analysis.xla_cost(program.compiled), **analysis.xla_memory(program.compiled),
            **{f"collectives.{op}": n for op, n in analysis.collective_counts(program.compiled).items()}}


def dense_ratios(record: dict, dense: str) -> dict:
    """Sectional/dense median step time next to the analytic FLOP ratio; `dense` is the dense fields' prefix."""
    return {"ratio.step_time_over_dense": record["train_step.median_s"] / record[f"{dense}train_step.median_s"],
            "ratio.flops_over_dense": record["analytic_flops.forward"] / record[f"{dense}analytic_flops.forward"]}


def measure_point(point: MeasurePoint, repeats: int = DEFAULT_REPEATS) -> dict:
    """Point fields at the top level, then `program.field`, `baseline.KIND.program.field` and ratios.

    With `baselines: true` the dense and top-k models of the same size are compiled in the same
    process and every program of every kind is timed in turn, so the sectional/dense ratios see the
    same machine state.
    """
    kind = point.config.model.kind
    configs = {"": point.config}
    if point.spec.baselines:
        configs |= {f"baseline.{other}.": points.baseline_config(point.config, other)
                    for other in BASELINE_KINDS if other != kind}
    record = dict(point.fields) | context()
    programs = {}
    for prefix, cfg in tqdm(configs.items(), desc="compiling", unit="model", disable=None, leave=False,
                            file=sys.stderr):
        payloads = point.spec.payloads if prefix == "" else ()
        record |= {prefix + key: value for key, value in static_fields(cfg, payloads).items()}
        programs |= {prefix + name: program for name, program in build_programs(cfg, payloads).items()}
    timings = time_round_robin({name: program.run for name, program in programs.items()}, repeats=repeats)
    for name, program in programs.items():
        record |= {f"{name}.{key}": value for key, value in program_fields(program, timings[name]["samples_s"]).items()}
    if point.spec.baselines:
        record |= dense_ratios(record, "" if kind == "dense" else "baseline.dense.")
    return record


def measure(point: MeasurePoint, repeats: int) -> dict:
    """A single-E point's record, or a setting's rows (`experts:`) timed together in rounds."""
    if point.members:
        from smoe.measure.setting import measure_setting

        return measure_setting(point, repeats)
    return measure_point(point, repeats)


def run_measure_point(point: MeasurePoint) -> dict:
    """`processes: N` > 1 measures with N local processes joined by jax.distributed (real
    inter-process collectives); the repeat count comes from the point's spec."""
    repeats = point.spec.repeats or DEFAULT_REPEATS
    if point.spec.processes > 1:
        from smoe.measure.worker import measure_in_processes

        return measure_in_processes(point, repeats)
    return measure(point, repeats)
