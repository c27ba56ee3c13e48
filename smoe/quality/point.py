"""Train one quality-sweep point and return everything the report needs, so the run directory can go.

The run lives in a temporary directory: the results database is the single durable record, and a
point killed mid-training is simply retrained from scratch by the sweep runner (no stale run dir
can be mistaken for a finished one).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from smoe.accounting import params_active, params_total, slot_flops, train_flops_per_token, useful_flops
from smoe.quality.heuristic import QualityPoint, config_for_budget, train_flops
from smoe.run_log import METRICS_NAME


def _metric_rows(run_dir: Path, split: str) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / METRICS_NAME).read_text().splitlines()]
    return [row for row in rows if row["split"] == split]


def _per_layer(row: dict, name: str, layers: range) -> list[float]:
    return [row[f"layer{layer}/{name}"] for layer in layers]


def routing_fields(cfg, train_rows: list[dict]) -> dict:
    """Token-routed points (topk, sectional with slice_experts): k, MaxVio, fallback and drops per
    routed layer at the last logged step, the expert stage's slot and useful forward FLOPs per token
    there, and k and MaxVio per routed layer over training (so a report can show whether k falls and
    where it sits by depth)."""
    if not cfg.model.routed:
        return {}
    layers, last = cfg.model.routed_layers, train_rows[-1]
    tokens = cfg.train.batch_size * cfg.model.seq_len
    fields = {name: _per_layer(last, name, layers) for name in ("mean_k", "max_vio", "fallback_fraction",
                                                                 "fraction_dropped")}
    return {
        **{f"{name}_per_layer": values for name, values in fields.items()},
        **{name: statistics.fmean(values) for name, values in fields.items()},
        "slot_flops_per_token": slot_flops(cfg.model, cfg.train.batch_size) / tokens,
        "useful_flops_per_token": useful_flops(cfg.model, cfg.train.batch_size, last) / tokens,
        "routing_curve": [[row["step"], _per_layer(row, "mean_k", layers), _per_layer(row, "max_vio", layers)]
                          for row in train_rows],
    }


def run_train_point(point: QualityPoint) -> dict:
    from smoe.train import train  # jax loads only when a point actually trains

    cfg = config_for_budget(point)
    with tempfile.TemporaryDirectory(prefix="smoe-quality-") as tmp:
        run_dir = Path(tmp) / "run"
        began = time.perf_counter()
        final = train(cfg, run_dir, progress=False)
        wall_s = time.perf_counter() - began
        train_rows, eval_rows = _metric_rows(run_dir, "train"), _metric_rows(run_dir, "eval")
    tokens_per_step = cfg.train.batch_size * cfg.model.seq_len
    # The median step excludes compilation (first step) and eval pauses, so time-to-loss compares
    # training speed alone; wall_s keeps the whole cost.
    tokens_per_s = statistics.median(row["tokens_per_s"] for row in train_rows)
    return {
        # The point's fields as the heuristic read them (arch merged, repeat folded into seed).
        **dataclasses.asdict(point), "label": point.label,
        "steps": cfg.train.steps, "batch_size": cfg.train.batch_size, "learning_rate": cfg.train.learning_rate,
        "tokens": cfg.train.steps * tokens_per_step, "train_flops": train_flops(cfg),
        "train_flops_per_token": train_flops_per_token(cfg.model),
        "params_total": params_total(cfg.model), "params_active": params_active(cfg.model),
        "val_ce": final["eval"]["ce"], "val_bpb": final["eval"]["bits_per_byte"],
        "train_loss": float(final["train"]["loss"]),
        "tokens_per_s": tokens_per_s, "seconds_per_step": tokens_per_step / tokens_per_s, "wall_s": wall_s,
        "eval_curve": [[row["step"], row["ce"]] for row in eval_rows],
        **routing_fields(cfg, train_rows),
    }
