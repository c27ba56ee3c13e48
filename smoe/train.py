"""The training loop: deterministic data, jitted steps on the mesh, eval, logs, checkpoints, resume.

Batches depend only on (seed, step) and nothing else carries state, so a run resumed from the
checkpoint at step s replays exactly the computation an uninterrupted run would have done.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from smoe import sharding, steps
from smoe.checkpoint import Checkpoints, DamagedCheckpoint
from smoe.config import RunConfig
from smoe.data import bits_per_byte, eval_batches, load_corpus, train_batch
from smoe.errors import UserError
from smoe.run_log import MetricsLog, prepare_run_dir, write_config
from smoe.training_stages import load_init


class TrainingDiverged(RuntimeError):
    """Loss, gradient norm or updated parameters went NaN/Inf; the run stops and keeps its last
    finite checkpoint (a checkpoint is only ever written from state checked finite)."""


class StepBoundaryInterrupt:
    """Ctrl-C takes effect after the current step (and its checkpoint), not inside an orbax write
    whose background threads would print their own tracebacks; a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._request)

    def _request(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def evaluate(programs: steps.Programs, val_tokens: np.ndarray, cfg: RunConfig) -> dict:
    """Every eval-step metric averaged over the eval batches, and the cross-entropy in bits per byte."""
    rows = [sharding.to_host(programs.eval_step(programs.params, sharding.global_batch(window, programs.mesh)))
            for window in eval_batches(val_tokens, cfg.train.batch_size, cfg.model.seq_len, cfg.train.eval_batches)]
    means = {name: float(np.mean([row[name] for row in rows])) for name in rows[0]}
    return means | {"bits_per_byte": bits_per_byte(means["ce"])}


def check_data(corpus, cfg: RunConfig) -> None:
    """Both splits must hold what the run will read: one window for a train batch (windows are drawn
    with replacement) and one full eval batch of train.batch_size windows."""
    corpus.check_seq_len(cfg.model.seq_len)
    window, batch = cfg.model.seq_len + 1, cfg.train.batch_size
    if corpus.val.size < batch * window:
        raise UserError(
            f"data.val_fraction: one eval batch needs train.batch_size x (model.seq_len + 1) = {batch} x {window} "
            f"= {batch * window} val bytes, but corpus {corpus.name!r} has {corpus.val.size}; raise "
            "data.val_fraction, use a larger corpus, or lower train.batch_size or model.seq_len")


def train(cfg: RunConfig, out: str | Path, resume: bool = False, progress: bool = True,
          resume_from: int | None = None, extend: bool = False, init_from: str | Path | None = None) -> dict:
    """Runs to cfg.train.steps; returns the last train and eval metrics.

    `resume_from` restores that checkpoint instead of the latest (and drops later ones); `extend`
    resumes a run with a larger train.steps, keeping its learning-rate schedule (prepare_run_dir). A
    fresh run may start from the weights of the run in `init_from` (see smoe.training_stages)."""
    out = Path(out)
    resume = resume or extend or resume_from is not None
    # Everything that can reject the input runs before the first byte is written.
    mesh = sharding.make_mesh(cfg.mesh)
    corpus = load_corpus(cfg.data.corpus, cfg.data.val_fraction, cfg.data.cache_dir or None)
    check_data(corpus, cfg)
    if init_from is not None and not (Path(init_from) / "checkpoints").is_dir():
        raise UserError(f"--init-from: {init_from} has no checkpoints/; pass the run directory of a finished run")
    is_main = jax.process_index() == 0
    cfg = prepare_run_dir(out, cfg, resume, extend, write=is_main)
    start = _start_step(Checkpoints.saved_steps(out / "checkpoints"), cfg, out, resume_from) if resume else 0
    checkpoints = Checkpoints(out / "checkpoints", cfg.train.keep_checkpoints)
    programs = steps.build(cfg, mesh)
    if start:
        _restore(checkpoints, programs, start)
    elif init_from is not None:
        programs.params = load_init(init_from, programs.params)
    if extend and is_main:
        write_config(out, cfg)
    log = MetricsLog(out, start, enabled=is_main)
    tc = cfg.train
    tokens_per_step = tc.batch_size * cfg.model.seq_len
    # The bar shows only on a terminal (disable=None), so logs and piped JSON stay clean.
    bar = tqdm(total=tc.steps, initial=start, disable=None if progress and is_main else True, unit="step",
               dynamic_ncols=True)
    last_saved = start if start in checkpoints.steps() else None
    train_metrics, eval_metrics = {}, {}
    interrupt = StepBoundaryInterrupt()
    try:
        for step in range(start, tc.steps):
            began = time.perf_counter()
            window = sharding.global_batch(train_batch(corpus.train, step, tc.batch_size, cfg.model.seq_len, tc.seed), mesh)
            programs.params, programs.opt_state, metrics = programs.train_step(programs.params, programs.opt_state, window)
            train_metrics = sharding.to_host(metrics)
            done = step + 1
            _check_finite(train_metrics, done, last_saved, checkpoints.directory)
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
            interrupt.check()
    finally:
        interrupt.close()
        bar.close()
        log.close()
        checkpoints.close()
    return {"train": train_metrics, "eval": eval_metrics}


def _check_finite(metrics: dict, step: int, last_saved: int | None, directory: Path) -> None:
    finite = bool(metrics.pop("params_finite"))
    bad = [f"{name} {float(metrics[name])}" for name in ("loss", "grad_norm") if not math.isfinite(float(metrics[name]))]
    if finite and not bad:
        return
    kept = (f"the last finite checkpoint is step {last_saved} in {directory}" if last_saved is not None
            else "there is no finite checkpoint")
    raise TrainingDiverged(
        f"training diverged at step {step} ({', '.join(bad + ([] if finite else ['non-finite parameters']))}); "
        f"stopped, {kept}. Lower train.learning_rate or raise train.warmup_steps and start a new --out.")


def _start_step(saved: list[int], cfg: RunConfig, out: Path, resume_from: int | None) -> int:
    """The checkpoint a resumed run continues from (0: killed before its first one, start over)."""
    if resume_from is not None and resume_from not in saved:
        raise UserError(f"--resume-from: {out} has no checkpoint at step {resume_from}; "
                        f"it has {', '.join(map(str, saved)) or 'none'}")
    step = resume_from if resume_from is not None else (saved[-1] if saved else 0)
    if step == cfg.train.steps:
        raise UserError(f"--resume: the run in {out} is finished (step {step} of train.steps={step}); to train on, "
                        f"pass --extend --set train.steps=N with N > {step} (the schedule is kept, see README)")
    return step


def _restore(checkpoints: Checkpoints, programs: steps.Programs, step: int) -> None:
    try:
        restored = checkpoints.restore(step, programs.state())
    except DamagedCheckpoint as err:
        earlier = [s for s in checkpoints.steps() if s < step]
        offer = (f"the previous one is step {earlier[-1]}; resume with --resume-from {earlier[-1]}" if earlier
                 else "there is no earlier one; start again with a new --out")
        raise UserError(f"--resume: checkpoint step {step} in {checkpoints.directory} is damaged ({err}); {offer}") from None
    programs.params, programs.opt_state = restored["params"], restored["opt_state"]
    checkpoints.delete_after(step)
