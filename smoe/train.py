"""The training loop: deterministic data, jitted steps on the mesh, eval, logs, checkpoints, resume.

Batches depend only on (seed, step) and nothing else carries state, so a run resumed from the
checkpoint at step s replays exactly the computation an uninterrupted run would have done.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from smoe import sharding, steps
from smoe.checkpoint import Checkpoints
from smoe.config import RunConfig
from smoe.data import bits_per_byte, eval_batches, load_corpus, train_batch
from smoe.errors import UserError
from smoe.run_log import MetricsLog, prepare_run_dir
from smoe.training_stages import load_init


class TrainingDiverged(RuntimeError):
    """The loss went NaN/Inf; the run stops and keeps its last good checkpoint."""


def evaluate(programs: steps.Programs, val_tokens: np.ndarray, cfg: RunConfig) -> dict:
    losses = [float(sharding.to_host(programs.eval_step(programs.params, sharding.global_batch(window, programs.mesh))))
              for window in eval_batches(val_tokens, cfg.train.batch_size, cfg.model.seq_len, cfg.train.eval_batches)]
    ce = float(np.mean(losses))
    return {"ce": ce, "bits_per_byte": bits_per_byte(ce)}


def train(cfg: RunConfig, out: str | Path, resume: bool = False, progress: bool = True,
          init_from: str | Path | None = None) -> dict:
    """Runs to cfg.train.steps; returns the last train and eval metrics. A fresh run may start from
    the weights of the run in `init_from` (see smoe.training_stages)."""
    out = Path(out)
    # Everything that can reject the input runs before the first byte is written.
    mesh = sharding.make_mesh(cfg.mesh)
    corpus = load_corpus(cfg.data.corpus, cfg.data.val_fraction, cfg.data.cache_dir or None)
    corpus.check_seq_len(cfg.model.seq_len)
    if init_from is not None and not (Path(init_from) / "checkpoints").is_dir():
        raise UserError(f"--init-from: {init_from} has no checkpoints/; pass the run directory of a finished run")
    is_main = jax.process_index() == 0
    if is_main:
        prepare_run_dir(out, cfg, resume)
    programs = steps.build(cfg, mesh)
    checkpoints = Checkpoints(out / "checkpoints", cfg.train.keep_checkpoints)
    start = 0
    if resume:
        latest = checkpoints.latest_step()
        if latest is None:
            raise UserError(f"--resume: {out} has no checkpoint yet; drop --resume and use a new --out")
        restored = checkpoints.restore(latest, programs.state())
        programs.params, programs.opt_state = restored["params"], restored["opt_state"]
        start = latest
    elif init_from is not None:
        programs.params = load_init(init_from, programs.params)
    log = MetricsLog(out, start, enabled=is_main)
    tc = cfg.train
    tokens_per_step = tc.batch_size * cfg.model.seq_len
    bar = tqdm(total=tc.steps, initial=start, disable=not (progress and is_main), unit="step", dynamic_ncols=True)
    last_saved = checkpoints.latest_step()
    train_metrics, eval_metrics = {}, {}
    try:
        for step in range(start, tc.steps):
            began = time.perf_counter()
            window = sharding.global_batch(train_batch(corpus.train, step, tc.batch_size, cfg.model.seq_len, tc.seed), mesh)
            programs.params, programs.opt_state, metrics = programs.train_step(programs.params, programs.opt_state, window)
            train_metrics = sharding.to_host(metrics)
            done = step + 1
            if not math.isfinite(float(train_metrics["loss"])):
                raise TrainingDiverged(f"loss is {float(train_metrics['loss'])} at step {done}; stopped. "
                                       f"Last good checkpoint: step {last_saved} in {out / 'checkpoints'}. "
                                       "Lower train.learning_rate or raise train.warmup_steps.")
            tokens_per_s = tokens_per_step / (time.perf_counter() - began)
            bar.update(1)
            bar.set_postfix(loss=f"{float(train_metrics['loss']):.3f}", tok_s=f"{tokens_per_s:,.0f}")
            final = done == tc.steps
            if done % tc.log_every == 0 or final:
                log.write(done, "train", train_metrics | {"tokens_per_s": tokens_per_s})
            if done % tc.eval_every == 0 or final:
                eval_metrics = evaluate(programs, corpus.val, cfg)
                log.write(done, "eval", eval_metrics)
            if done % tc.checkpoint_every == 0 or final:
                checkpoints.save(done, programs.state())
                last_saved = done
    finally:
        bar.close()
        log.close()
        checkpoints.close()
    return {"train": train_metrics, "eval": eval_metrics}
