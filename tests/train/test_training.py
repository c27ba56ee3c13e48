"""Training on the real corpus: the loss falls, resume is bit-identical, divergence stops cleanly,
damaged checkpoints are named and skipped, finished runs extend on the same schedule."""

import dataclasses
import json

import jax
import numpy as np
import pytest
import yaml

import smoe.train
from smoe import sharding, steps
from smoe.checkpoint import Checkpoints
from smoe.data import load_corpus, train_batch
from smoe.cli import main
from smoe.train import train
from tests.train.helpers import run_config, tiny_run, write_config


@pytest.mark.parametrize("model", [{"kind": "dense"}, {"kind": "topk"}, {"kind": "sectional"},
                                   {"kind": "sectional", "slice_experts": 4, "routing": "controlled", "k_target": 1.5,
                                    "balance": "bias"}], ids=["dense", "topk", "sectional", "sectional-routed"])
def test_two_steps_lower_the_loss_on_real_text(shakespeare, model):
    cfg = run_config(tiny_run(model=model, train={"warmup_steps": 0, "learning_rate": 0.01}))
    mesh = sharding.make_mesh(cfg.mesh)
    programs = steps.build(cfg, mesh)
    corpus = load_corpus("shakespeare")
    window = sharding.global_batch(train_batch(corpus.train, 0, 8, cfg.model.seq_len, seed=0), mesh)
    before = float(programs.eval_step(programs.params, window)["ce"])
    for _ in range(2):
        programs.params, programs.opt_state, _ = programs.train_step(programs.params, programs.opt_state, window)
    after = float(programs.eval_step(programs.params, window)["ce"])
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


def _cli(capsys, *argv):
    """`smoe ...` in-process; returns (exit code, stderr lines)."""
    code = main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


def _checkpoint_steps(run):
    checkpoints = Checkpoints(run / "checkpoints", keep=2)
    try:
        return checkpoints.steps()
    finally:
        checkpoints.close()


def _snapshot(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_divergence_keeps_only_finite_checkpoints_and_resumes(shakespeare, tmp_path, capsys):
    # At lr 1e30 step 1 leaves huge but finite parameters; step 2's gradient is NaN while its loss is
    # still finite, so a loss-only check would have saved NaN parameters as checkpoint 2.
    config = write_config(tmp_path / "run.yaml", tiny_run(train={
        "learning_rate": 1e30, "warmup_steps": 0, "checkpoint_every": 1, "eval_every": 4}))
    run = tmp_path / "run"
    code, err = _cli(capsys, "train", str(config), "--out", str(run), "--no-progress")
    assert code == 3 and len(err) == 1, err
    assert "diverged at step 2" in err[0] and "grad_norm nan" in err[0]
    assert "last finite checkpoint is step 1" in err[0]
    assert _checkpoint_steps(run) == [1]
    cfg = run_config(tiny_run(train={"learning_rate": 1e30, "warmup_steps": 0}))
    programs = steps.build(cfg, sharding.make_mesh(cfg.mesh))
    checkpoints = Checkpoints(run / "checkpoints", keep=2)
    state = checkpoints.restore(1, programs.state())
    checkpoints.close()
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state))

    # Resuming restores the finite step 1 and replays step 2 exactly, so it stops the same way.
    code, err = _cli(capsys, "train", str(config), "--out", str(run), "--no-progress", "--resume")
    assert code == 3 and len(err) == 1 and "diverged at step 2" in err[0] and "step 1" in err[0], err
    assert _checkpoint_steps(run) == [1]
    assert [json.loads(row)["step"] for row in (run / "metrics.jsonl").read_text().splitlines()] == [1]


def test_damaged_checkpoint_resume_from_and_extend(shakespeare, tmp_path, capsys):
    config = write_config(tmp_path / "run.yaml", tiny_run())
    run = tmp_path / "run"
    assert _cli(capsys, "train", str(config), "--out", str(run), "--no-progress")[0] == 0
    finished_rows = (run / "metrics.jsonl").read_text().splitlines()

    code, err = _cli(capsys, "train", str(config), "--out", str(run), "--no-progress", "--resume")
    assert code == 2 and len(err) == 1 and "is finished (step 4" in err[0] and "--extend" in err[0], err

    # A file lost from the latest checkpoint (a bad copy, a full disk) must not surface as a traceback.
    victim = max((p for p in (run / "checkpoints" / "4").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim.unlink()
    before = _snapshot(run)
    extend = ("train", str(config), "--out", str(run), "--no-progress", "--extend", "--set", "train.steps=6")
    code, err = _cli(capsys, *extend)
    assert code == 2 and len(err) == 1, err
    assert "checkpoint step 4" in err[0] and "is damaged" in err[0] and "--resume-from 2" in err[0]
    assert _snapshot(run) == before

    code, err = _cli(capsys, *extend, "--resume-from", "2")
    assert code == 0, err
    saved = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert (saved["steps"], saved["decay_steps"]) == (6, 4)
    # Steps 3 and 4 replay exactly as first trained (same schedule), then 5 and 6 follow.
    drop_speed = lambda row: {k: v for k, v in json.loads(row).items() if k != "tokens_per_s"}  # noqa: E731
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert [drop_speed(r) for r in rows[:len(finished_rows)]] == [drop_speed(r) for r in finished_rows]
    assert json.loads(rows[-1])["step"] == 6
    assert _checkpoint_steps(run) == [4, 6]


def test_extended_schedule_keeps_the_steps_already_taken():
    base = run_config(tiny_run(train={"steps": 40, "warmup_steps": 4})).train
    extended = dataclasses.replace(base, steps=100, decay_steps=40)
    before, after = steps.learning_rate(base), steps.learning_rate(extended)
    for step in range(41):
        assert float(after(step)) == float(before(step))
    assert all(float(after(step)) == pytest.approx(0.1 * base.learning_rate) for step in range(40, 101))
