"""A run config small enough to train for a few steps in seconds, on the real Shakespeare corpus."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from smoe.config import config_from_dict

TINY_RUN = {
    "model": {"kind": "sectional", "d_model": 32, "n_layers": 2, "n_heads": 2, "ffn_mult": 2, "seq_len": 32,
              "n_experts": 4, "expert_heads": 1, "pre_layers": 1, "shorten": 2},
    "mesh": {"data": 2, "expert": 2},
    "data": {"corpus": "shakespeare"},
    "train": {"steps": 4, "batch_size": 8, "learning_rate": 0.01, "warmup_steps": 1, "eval_every": 2,
              "eval_batches": 2, "checkpoint_every": 2, "log_every": 1},
}


def tiny_run(**sections):
    raw = {name: dict(values) for name, values in TINY_RUN.items()}
    for name, values in sections.items():
        raw[name].update(values)
    return raw


def write_config(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def run_config(raw: dict):
    return config_from_dict(raw)


def smoe_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smoe.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=600)


def last_json_line(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])
