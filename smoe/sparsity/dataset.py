"""`smoe sparsity collect`: predictor inputs and importance targets from a trained run.

Windows come from the train split (seeded, disjoint from the val windows `eval` scores). Per window:
the ShadowLLM input (layer-0 head outputs, or the sectional pre-expert output) and every layer's input
at the last prompt position, and the criterion's head and neuron importance over the whole window.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jax
import numpy as np

from smoe.data import train_batch
from smoe.errors import UserError
from smoe.sparsity import importance, plans
from smoe.sparsity.layout import CRITERIA
from smoe.sparsity.run import load_net, load_text, prompt_position

DATA_NAME, META_NAME = "data.npz", "meta.json"
COLLECT_SEED = 1_000_003


def collect(run_dir: Path, out: Path, criterion: str, windows: int, batch: int = 8, force: bool = False) -> dict:
    if criterion not in CRITERIA:
        raise UserError(f"--criterion: must be one of {CRITERIA}, got {criterion!r}")
    if windows < 2 * batch:
        raise UserError(f"--windows: need at least {2 * batch} (two batches) to fit and score a predictor, got {windows}")
    check_out(out, force, (DATA_NAME, META_NAME))
    cfg, net, spec = load_net(run_dir)
    corpus = load_text(cfg)
    at = prompt_position(cfg)

    @jax.jit
    def one_batch(net, window_bt):
        heads, neurons = importance.flatten(importance.importance(net, spec, window_bt, criterion))
        inputs_bt = window_bt[:, :-1]
        return (plans.shadow_features(net, spec, inputs_bt, at), plans.layer_inputs(net, spec, inputs_bt, at),
                heads, neurons)

    parts = [jax.device_get(one_batch(net, train_batch(corpus.train, i, batch, cfg.model.seq_len, COLLECT_SEED)))
             for i in range(windows // batch)]
    arrays = dict(zip(("shadow_x", "layer_x", "heads", "neurons"), (np.concatenate(p) for p in zip(*parts))))
    meta = {"run_dir": str(run_dir), "criterion": criterion, "windows": int(arrays["heads"].shape[0]),
            "prompt_position": at, "seed": COLLECT_SEED}
    write_dir(out, DATA_NAME, arrays, META_NAME, meta)
    return meta


def check_out(out: Path, force: bool, own: tuple[str, ...]) -> None:
    """Before any work: --out is a new or empty directory, or (with --force) one holding only the files
    `own` that this command writes."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} is a file; choose a new directory")
    if not out.exists() or not any(out.iterdir()):
        return
    if not force:
        raise UserError(f"--out: {out} is not empty; pass --force to replace the output there, or choose a new "
                        "directory")
    if not {path.name for path in out.iterdir()} <= set(own):
        raise UserError(f"--out: {out} holds files that `smoe sparsity` did not write; --force replaces only its "
                        f"own output; choose a new directory")


def write_dir(out: Path, npz_name: str, arrays: dict, json_name: str, meta: dict) -> None:
    """Everything lands in a sibling temp dir that is renamed into place: a kill leaves nothing half written
    (a replaced output is moved aside first and removed once the new one is in place)."""
    tmp, old = out.with_name(f".{out.name}.tmp"), out.with_name(f".{out.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.savez(tmp / npz_name, **arrays)
    (tmp / json_name).write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def load(data_dir: Path) -> tuple[dict, dict]:
    data_dir = Path(data_dir)
    if not (data_dir / DATA_NAME).is_file() or not (data_dir / META_NAME).is_file():
        raise UserError(f"DATA_DIR: {data_dir} holds no dataset; make one with `smoe sparsity collect`")
    with np.load(data_dir / DATA_NAME) as data:
        arrays = {name: data[name] for name in data.files}
    return arrays, json.loads((data_dir / META_NAME).read_text())
