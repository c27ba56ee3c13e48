"""Training on the real corpus: the loss falls, resume is bit-identical, divergence stops cleanly."""

import json

import jax
import numpy as np
import pytest

import smoe.train
from smoe import sharding, steps
from smoe.checkpoint import Checkpoints
from smoe.data import load_corpus, train_batch
from smoe.train import TrainingDiverged, train
from tests.train.helpers import run_config, tiny_run


@pytest.mark.parametrize("kind", ["dense", "topk", "sectional"])
def test_two_steps_lower_the_loss_on_real_text(shakespeare, kind):
    cfg = run_config(tiny_run(model={"kind": kind}, train={"warmup_steps": 0, "learning_rate": 0.01}))
    mesh = sharding.make_mesh(cfg.mesh)
    programs = steps.build(cfg, mesh)
    corpus = load_corpus("shakespeare")
    window = sharding.global_batch(train_batch(corpus.train, 0, 8, cfg.model.seq_len, seed=0), mesh)
    before = float(programs.eval_step(programs.params, window))
    for _ in range(2):
        programs.params, programs.opt_state, _ = programs.train_step(programs.params, programs.opt_state, window)
    after = float(programs.eval_step(programs.params, window))
    assert after < before - 0.05, (before, after)


def _restore_final(out, cfg):
    programs = steps.build(cfg, sharding.make_mesh(cfg.mesh))
    checkpoints = Checkpoints(out / "checkpoints", keep=2)
    state = checkpoints.restore(cfg.train.steps, programs.state())
    checkpoints.close()
    return state


@pytest.mark.parametrize("model", [{}, {"kind": "topk", "routing": "controlled", "k_target": 1.5, "balance": "bias"}])
def test_resume_after_interruption_is_bit_identical(shakespeare, tmp_path, monkeypatch, model):
    """Router state (bias, controller) is part of the checkpoint, so adaptive routing resumes exactly too."""
    cfg = run_config(tiny_run(model=model))
    train(cfg, tmp_path / "straight", progress=False)

    real_batch = smoe.train.train_batch

    def interrupted_batch(tokens, step, *args, **kwargs):
        if step == 3:  # after the step-2 checkpoint, mid-run
            raise KeyboardInterrupt
        return real_batch(tokens, step, *args, **kwargs)

    monkeypatch.setattr(smoe.train, "train_batch", interrupted_batch)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(smoe.train, "train_batch", real_batch)
    train(cfg, tmp_path / "resumed", resume=True, progress=False)

    straight, resumed = _restore_final(tmp_path / "straight", cfg), _restore_final(tmp_path / "resumed", cfg)
    leaves_a, leaves_b = jax.tree.leaves(straight), jax.tree.leaves(resumed)
    assert len(leaves_a) == len(leaves_b) > 0
    for a, b in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    rows = [(tmp_path / run / "metrics.jsonl").read_text().splitlines() for run in ("straight", "resumed")]
    assert [json.loads(r)["step"] for r in rows[1]] == [json.loads(r)["step"] for r in rows[0]]
    drop_speed = lambda row: {k: v for k, v in json.loads(row).items() if k != "tokens_per_s"}  # noqa: E731
    assert [drop_speed(r) for r in rows[0]] == [drop_speed(r) for r in rows[1]]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(shakespeare, tmp_path, monkeypatch):
    cfg = run_config(tiny_run(train={"steps": 6}))
    real_build = steps.build

    def build_that_diverges_at_step_3(*args):
        programs = real_build(*args)
        real_step, calls = programs.train_step, []

        def train_step(params, opt_state, window):
            calls.append(1)
            if len(calls) == 3:
                params = jax.tree.map(lambda p: p * np.float32("nan"), params)
            return real_step(params, opt_state, window)

        programs.train_step = train_step
        return programs

    monkeypatch.setattr(smoe.train.steps, "build", build_that_diverges_at_step_3)
    with pytest.raises(TrainingDiverged, match="at step 3.*Last good checkpoint: step 2"):
        train(cfg, tmp_path / "run", progress=False)
    checkpoints = Checkpoints(tmp_path / "run" / "checkpoints", keep=2)
    assert checkpoints.latest_step() == 2
    checkpoints.close()
