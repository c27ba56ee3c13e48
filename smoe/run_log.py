"""Where a run writes: its config, metrics.jsonl and TensorBoard events, written by process 0 only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from smoe import atomic
from smoe.config import RunConfig
from smoe.errors import UserError

CONFIG_NAME = "config.yaml"
METRICS_NAME = "metrics.jsonl"


def prepare_run_dir(out: Path, cfg: RunConfig, resume: bool) -> None:
    """A fresh run needs an empty (or new) dir; a resumed one needs the very same config."""
    saved = out / CONFIG_NAME
    if resume:
        if not saved.is_file():
            raise UserError(f"--resume: {out} holds no run ({CONFIG_NAME} missing); drop --resume to start one")
        if yaml.safe_load(saved.read_text()) != cfg.to_dict():
            raise UserError(f"--resume: the config differs from the one saved in {saved}; "
                            "resume with the same config or use a new --out")
        return
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out: {out} is not empty; pass --resume to continue that run or choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(saved, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _parse_row(line: str) -> dict | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _jsonable(value):
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()


class MetricsLog:
    def __init__(self, out: Path, resume_step: int, enabled: bool):
        self.enabled = enabled
        self.path = out / METRICS_NAME
        self._writer = None
        if not enabled:
            return
        if self.path.exists():
            # Rows logged after the checkpoint we resume from will be logged again, and a kill
            # mid-append can leave a torn last line; keep only whole rows up to the checkpoint.
            rows = [row for row in map(_parse_row, self.path.read_text().splitlines())
                    if row is not None and row["step"] <= resume_step]
            atomic.write_text(self.path, "".join(json.dumps(row) + "\n" for row in rows))
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(logdir=str(out / "tensorboard"), purge_step=resume_step + 1)

    def write(self, step: int, split: str, metrics: dict) -> None:
        if not self.enabled:
            return
        row = {"step": step, "split": split} | {k: _jsonable(v) for k, v in metrics.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
        for name, value in row.items():
            if isinstance(value, (int, float)) and name != "step":
                self._writer.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
