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

from smoe.accounting import params_active, params_total, train_flops_per_token
from smoe.quality.heuristic import QualityPoint, config_for_budget, train_flops
from smoe.run_log import METRICS_NAME


def _metric_rows(run_dir: Path, split: str) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / METRICS_NAME).read_text().splitlines()]
    return [row for row in rows if row["split"] == split]


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
    }
