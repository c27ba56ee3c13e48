"""A three-point `kind: train` sweep end to end on the real corpus: trained, stored, resumed, reported."""

import argparse
import math

import pytest

from smoe.errors import UserError
from smoe.quality import cli as quality_cli
from smoe.quality.heuristic import MIN_STEPS, batch_size, model_config, point_from_dict
from smoe.accounting import train_flops_per_token
from smoe.sweep.kinds import kind_for
from smoe.sweep.runner import run_sweep
from smoe.sweep.spec import SweepSpec, expand

BASE = {"d_model": 16, "n_layers": 2, "seq_len": 16, "eval_batches": 2}
# k_target 1 keeps the routed model's cost per token, and so everyone's steps, near the dense model's
ADAPTIVE = {"family": "topk", "n_experts": 4, "routing": "controlled", "k_target": 1.0, "k_cap": 2, "balance": "bias"}
ADAPTIVE_LABEL = "topk E4 ktarget1 balance bias kcap2"
ARCHES = [{"family": "dense"}, {"family": "sectional", "n_experts": 2, "shorten": 2}, ADAPTIVE]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smoe")
    quality_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _tiny_budget() -> float:
    """Just over MIN_STEPS steps for the costliest model, so each trains in seconds."""
    per_step = max(train_flops_per_token(model_config(point_from_dict(BASE | arch | {"budget": 1.0})))
                   for arch in ARCHES) * batch_size(16) * BASE["seq_len"]
    return (MIN_STEPS + 2) * per_step


def test_three_point_mini_sweep_trains_stores_resumes_and_reports(tmp_path):
    parser = _parser()
    budget = _tiny_budget()
    spec = SweepSpec.from_dict({"name": "mini", "kind": "train", "base": BASE | {"budget": budget},
                                "grid": {"arch": ARCHES}})
    kind = kind_for("train")
    parsed = [kind.parse(point) for point in expand(spec)]
    kind.prepare(parsed)
    out = tmp_path / "sweep"
    assert run_sweep(spec, out, lambda point: kind.run(kind.parse(point)), progress=False)["done"] == 3

    def must_not_run(point):
        raise AssertionError(f"done point retrained: {point}")

    assert run_sweep(spec, out, must_not_run, progress=False) == {"total": 3, "done": 3, "failed": 0, "running": 0}

    report_dir = tmp_path / "report"
    args = parser.parse_args(["quality", "report", str(out), "--out", str(report_dir), "--bootstrap", "5"])
    assert args.func(args) == 0
    for name in ("results.csv", "results.md", "fits.json", "iso_flop.png", "loss_vs_e.png"):
        assert (report_dir / name).stat().st_size > 0, name
    text = (report_dir / "results.md").read_text()
    assert "| dense | 16 |" in text and "| sectional E2 r2 | 16 |" in text
    assert f"| {ADAPTIVE_LABEL} | 16 |" in text and "## Token routing" in text

    from smoe.sweep.store import ResultStore

    with ResultStore(out, create=False) as store:
        rows = {row["label"]: row for row in store.rows()}
    assert set(rows) == {"dense", "sectional E2 r2", ADAPTIVE_LABEL}
    routed = rows.pop(ADAPTIVE_LABEL)
    layers = BASE["n_layers"]
    assert len(routed["mean_k_per_layer"]) == len(routed["max_vio_per_layer"]) == layers
    assert routed["mean_k"] == pytest.approx(sum(routed["mean_k_per_layer"]) / layers)
    assert all(1 <= k <= 2 for k in routed["mean_k_per_layer"])  # k_cap 2
    # the expert stage never does more useful work than its slots allow
    assert 0 < routed["useful_flops_per_token"] <= routed["slot_flops_per_token"]
    steps_logged = [row[0] for row in routed["routing_curve"]]
    assert steps_logged == sorted(steps_logged) and steps_logged[-1] == routed["steps"]
    assert routed["params_active"] < routed["params_total"] and abs(routed["train_flops"] / budget - 1) <= 0.01
    for row in rows.values():
        assert abs(row["train_flops"] / budget - 1) <= 0.01
        assert math.isfinite(row["val_bpb"]) and 0 < row["val_bpb"] < 8  # below a uniform byte's 8 bits
        assert row["params_total"] == row["params_active"] > 0
        assert row["eval_curve"][-1][0] == row["steps"] and len(row["eval_curve"]) >= 3
        assert row["tokens_per_s"] > 0 and row["wall_s"] > 0
    # Same compute: the sectional model is cheaper per token, so it trained on more tokens.
    assert rows["sectional E2 r2"]["tokens"] > rows["dense"]["tokens"]


def test_parse_refuses_a_bad_point_before_anything_runs(tmp_path):
    with pytest.raises(UserError, match="^budget:"):
        kind_for("train").parse(BASE | {"family": "dense", "budget": 1.0})


def test_report_of_an_empty_directory_is_a_user_error(tmp_path):
    args = _parser().parse_args(["quality", "report", str(tmp_path)])
    with pytest.raises(UserError, match="no results"):
        args.func(args)
