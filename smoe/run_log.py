"""Where a run writes: its config, metrics.jsonl and TensorBoard events, written by process 0 only."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import yaml

from smoe import atomic
from smoe.config import RunConfig, config_from_dict
from smoe.errors import UserError

CONFIG_NAME = "config.yaml"
METRICS_NAME = "metrics.jsonl"


def config_changes(old: dict, new: dict) -> list[str]:
    """`section.key: old -> new` for every value that differs between two config dicts."""
    changes = []
    for section in dict.fromkeys([*old, *new]):
        before, after = old.get(section) or {}, new.get(section) or {}
        for key in dict.fromkeys([*before, *after]):
            if before.get(key) != after.get(key):
                changes.append(f"{section}.{key}: {before.get(key)!r} -> {after.get(key)!r}")
    return changes


def saved_config(out: Path, flag: str = "--resume") -> RunConfig | None:
    """The config a run in `out` was started with; None where there is no run."""
    saved = out / CONFIG_NAME
    if not saved.is_file():
        return None
    try:
        return config_from_dict(yaml.safe_load(saved.read_text()))
    except (yaml.YAMLError, UnicodeDecodeError, UserError) as err:
        raise UserError(f"{flag}: {saved} is damaged ({str(err).splitlines()[0]}); restore it from the "
                        "config the run was started with") from None


def prepare_run_dir(out: Path, cfg: RunConfig, resume: bool, extend: bool = False, write: bool = True) -> RunConfig:
    """A fresh run needs an empty (or new) dir; a resumed one needs the very same config, except
    that --extend may raise train.steps. Returns the config the run continues with; writes nothing
    on resume (an extension's config is written by `write_config` once its checkpoint restored).
    Processes other than 0 (`write=False`) only derive the config; process 0 owns the directory."""
    flag = "--extend" if extend else "--resume"
    if resume or extend:
        saved = saved_config(out)
        if saved is None:
            raise UserError(f"{flag}: {out} holds no run ({CONFIG_NAME} missing); drop {flag} to start one")
        if extend:
            if cfg.train.steps < saved.train.steps:
                raise UserError(f"--extend: train.steps={cfg.train.steps} is below the run's {saved.train.steps}; "
                                f"pass --set train.steps=N with N > {saved.train.steps}")
            # The schedule keeps the horizon the finished steps followed; later steps run at its final rate.
            pinned = dataclasses.replace(cfg.train, decay_steps=saved.train.schedule_steps)
            cfg = dataclasses.replace(cfg, train=pinned)
            saved = dataclasses.replace(saved, train=dataclasses.replace(saved.train, steps=cfg.train.steps,
                                                                           decay_steps=pinned.decay_steps))
        changes = config_changes(saved.to_dict(), cfg.to_dict())
        if changes:
            raise UserError(f"{flag}: the config differs from the one saved in {out / CONFIG_NAME} "
                            f"({'; '.join(changes)}); resume with the same config or use a new --out")
        return cfg
    if not write:
        return cfg
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} is a file, not a directory; choose a new --out")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out: {out} is not empty; pass --resume to continue that run or choose a new --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--out: cannot create {out} ({err.strerror}); choose a writable --out") from None
    write_config(out, cfg)
    return cfg


def write_config(out: Path, cfg: RunConfig) -> None:
    atomic.write_text(out / CONFIG_NAME, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


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
