"""Verdicts with intervals and the learning-rate choice, on synthetic stored rows (no training)."""

import json
import math

import numpy as np
import pytest

from smoe.quality import report, verdicts
from smoe.errors import UserError
from smoe.quality.cli import resolve_lr, write_report
from smoe.quality.heuristic import point_from_dict
from smoe.sweep.runner import run_sweep
from smoe.sweep.spec import SweepSpec

C = 1e12
T_975_DF4 = 2.7764451  # Student t, 97.5th percentile, 4 degrees of freedom (tables)


def _row(family, bpb, seed, n_experts=1, shorten=1, d_model=32, lr_scale=1.0, budget=C):
    label = {"dense": "dense", "hourglass": f"hourglass r{shorten}", "topk": f"topk E{n_experts} k2",
             "sectional": f"sectional E{n_experts} r{shorten}"}[family]
    ce = bpb * math.log(2)
    return {"budget": budget, "label": label, "family": family, "d_model": d_model, "seed": seed,
            "n_experts": n_experts, "shorten": shorten, "lr_scale": lr_scale, "learning_rate": 0.01 * lr_scale,
            "val_ce": ce, "val_bpb": bpb, "seconds_per_step": 0.01, "eval_curve": [[50, ce + 0.5], [100, ce]],
            "params_total": 1000, "params_active": 1000, "tokens_per_s": 1e4, "train_flops_per_token": 1e6,
            "steps": 100, "seq_len": 64}


def _seeds(family, centre, spread=0.01, **kw):
    return [_row(family, centre + spread * (seed - 1), seed, **kw) for seed in range(3)]


def _rows(budget=C, shift=0.0):
    return (_seeds("dense", 3.50 + shift, budget=budget) + _seeds("hourglass", 3.40 + shift, shorten=2, budget=budget)
            + _seeds("sectional", 3.30 + shift, n_experts=4, shorten=2, budget=budget)  # 0.1 better than its control
            + _seeds("sectional", 3.505 + shift, spread=0.02, n_experts=4, shorten=1, budget=budget)  # within noise
            + [_row("topk", 3.6 + shift, 0, n_experts=4, budget=budget)])  # one seed: no interval


def _by_name(found):
    return {(e.name, e.setting.label): e for e in found}


def test_welch_interval_matches_the_textbook_t_interval():
    a, b = np.array([3.29, 3.30, 3.31]), np.array([3.39, 3.40, 3.41])
    half = T_975_DF4 * math.sqrt(2 * 1e-4 / 3)  # equal sizes and variances: df = 4
    lo, hi = verdicts.welch_interval(a, b)
    assert (lo, hi) == pytest.approx((-0.1 - half, -0.1 + half), abs=1e-9)
    assert verdicts.welch_interval(a, b[:1]) is None


def test_sectioning_and_shortening_effects_are_worded_with_their_intervals():
    found = _by_name(verdicts.effects(report.settings(_rows()), C))
    half = T_975_DF4 * math.sqrt(2 * 1e-4 / 3)
    sectioning = found[("sectioning effect at r=2", "sectional E4 r2")]
    assert sectioning.baseline.label == "hourglass r2"
    assert sectioning.line() == (f"sectioning effect at r=2: -0.1000 bpb [{-0.1 - half:+.4f}, {-0.1 + half:+.4f}] "
                                 "(sectional E4 r2 d=32 vs hourglass r2 d=32, 1e+12 FLOPs): sectional E4 r2 better")
    assert found[("shortening effect at r=2", "hourglass r2")].verdict == "hourglass r2 better"
    assert found[("shortening effect on sectional E4 at r=2", "sectional E4 r2")].baseline.label == "sectional E4 r1"
    at_r1 = found[("sectioning effect at r=1", "sectional E4 r1")]
    assert at_r1.baseline.label == "dense" and at_r1.verdict == "not distinguishable"
    assert at_r1.line().endswith(": not distinguishable")
    assert found[("token routing effect", "topk E4 k2")].verdict.startswith("no interval")
    names = [e.name for e in verdicts.effects(report.settings(_rows()), C)]
    assert names.index("sectioning effect at r=2") < names.index("shortening effect at r=2")


def test_lr_choice_takes_the_lowest_mean_and_flags_the_edge():
    rows = [_row("dense", bpb, seed, lr_scale=scale) for scale, bpb in ((0.5, 3.6), (1.0, 3.5), (2.0, 3.55))
            for seed in range(2)]
    rows += [_row("hourglass", bpb, 0, shorten=2, lr_scale=scale) for scale, bpb in ((0.5, 3.6), (1.0, 3.5), (2.0, 3.4))]
    choices = {c["label"]: c for c in verdicts.lr_choices(report.settings(rows))}
    assert (choices["dense"]["lr_scale"], choices["dense"]["at_edge"]) == (1.0, False)
    assert (choices["hourglass r2"]["lr_scale"], choices["hourglass r2"]["at_edge"]) == (2.0, True)
    assert choices["dense"]["learning_rate"] == pytest.approx(0.01)
    # everything else sees each model once, at its best scale
    best = report.best_lr(report.settings(rows))
    assert [(s.label, s.lr_scale) for s in best] == [("dense", 1.0), ("hourglass r2", 2.0)]
    every = report.settings(rows)
    assert "**2** (at the edge of the range: extend it)" in verdicts.lr_table(verdicts.lr_choices(every), every)
    taken = report.settings([dict(_row("dense", 3.5, 0, lr_scale=2.0), lr_from="runs/lr")])
    assert verdicts.lr_table([], taken) == "* dense: lr_scale 2, chosen in `runs/lr`"


def test_report_writes_effects_and_lr_choice(tmp_path):
    rows = _rows() + [_row("dense", 3.7, seed, lr_scale=2.0) for seed in range(3)] + _rows(3 * C, -0.2)
    by_key = {str(i): row for i, row in enumerate(rows)}
    spec = SweepSpec(name="synthetic-train", kind="stored", grid={"i": list(by_key)})
    run_sweep(spec, tmp_path, lambda point: by_key[str(point["i"])], progress=False)
    text = write_report(tmp_path, tmp_path, bootstrap=5, progress=False)
    assert "* sectioning effect at r=2: -0.1000 bpb [" in text and "sectional E4 r2 better" in text
    assert "sectioning effect at r=1: " in text and ": not distinguishable" in text
    assert "| 1e+12 | dense | 32 | 1: 3.5000, 2: 3.7000 | **1** (at the edge" in text
    fits = json.loads((tmp_path / "fits.json").read_text())
    assert {e["verdict"] for e in fits["effects"]} >= {"not distinguishable", "sectional E4 r2 better"}
    assert [(c["label"], c["budget"]) for c in fits["lr_choice"]] == [("dense", C)]
    assert set(fits["loss_vs_budget"]) >= {"dense", "hourglass r2", "sectional E4 r2"}


def test_lr_from_takes_the_familys_choice_at_the_smallest_budget_and_the_points_width(tmp_path):
    rows = [_row("dense", bpb, 0, lr_scale=scale, d_model=d) for d, scale, bpb in
            ((32, 0.5, 3.6), (32, 1.0, 3.5), (32, 2.0, 3.45), (64, 0.5, 3.4), (64, 1.0, 3.5), (64, 2.0, 3.7))]
    rows += [_row("dense", 3.0, 0, lr_scale=scale, budget=10 * C) for scale in (1.0, 2.0)]  # a larger budget: ignored
    spec = SweepSpec(name="lr", kind="stored", grid={"i": list(range(len(rows)))})
    run_sweep(spec, tmp_path, lambda point: rows[point["i"]], progress=False)
    assert verdicts.lr_scale_from(str(tmp_path), "dense", 32) == 2.0  # the swept width's own choice
    assert verdicts.lr_scale_from(str(tmp_path), "dense", 64) == 0.5
    assert verdicts.lr_scale_from(str(tmp_path), "dense", 128) == 0.5  # not swept: d=64's reached the lowest loss
    for d_model, scale in ((32, 2.0), (64, 0.5)):
        raw = {"family": "dense", "d_model": d_model, "budget": 1e12, "lr_from": str(tmp_path)}
        assert resolve_lr(point_from_dict(raw)).lr_scale == scale
    with pytest.raises(UserError, match=r"^lr_from: .* holds no hourglass r2 trained at two or more lr_scales"):
        verdicts.lr_scale_from(str(tmp_path), "hourglass r2", 32)
    with pytest.raises(UserError, match="^lr_scale: a point with lr_from"):
        point_from_dict({"family": "dense", "d_model": 32, "budget": 1e12, "lr_from": "x", "lr_scale": 2.0})
