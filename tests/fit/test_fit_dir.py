"""`smoe fit DIR` on a sweep directory whose timings follow a known cost curve."""

import json

import numpy as np
import pytest

from smoe.cli import main
from smoe.sweep.spec import SweepSpec, expand, point_key
from smoe.sweep.store import ResultStore

TRUE = {"const": 0.05, "inv_e": 0.4, "alpha": 2e-4}  # work-regime seconds(E): E_opt = (0.4/(2*2e-4))^(1/3) = 10


def _write_sweep(directory, seed: int, backend: str = "cpu") -> None:
    spec = SweepSpec(name="synthetic-measure", kind="measure", base={"d": 128, "L": 64, "devices": 8},
                     grid={"E": [1, 2, 4, 8, 16, 32]})
    rng = np.random.default_rng(seed)
    with ResultStore(directory) as store:
        store.open_for(spec)
        for point in expand(spec):
            e = point["E"]
            truth = TRUE["const"] + TRUE["inv_e"] / e + TRUE["alpha"] * e**2
            samples = (truth * (1 + 0.01 * rng.standard_normal(9))).tolist()
            store.mark_running(point_key(point), point)
            store.mark_done(point_key(point), {"kind": "sectional", "backend": backend,
                                               "train_step.samples_s": samples,
                                               "train_step.median_s": float(np.median(samples))})


def test_fit_dir_recovers_alpha_and_writes_json_and_figure(tmp_path, capsys):
    _write_sweep(tmp_path, seed=0)
    assert main(["fit", str(tmp_path), "--bootstrap", "100", "--overhead", "quadratic"]) == 0
    result = json.loads((tmp_path / "fit.json").read_text())
    assert result["regime"] == "work", "CPU-emulated devices share cores: the work reading is the default"
    (group,) = result["groups"]
    entry = group["fits"]["train_step"]
    fit = entry["fit"]
    lo, hi = fit["alpha_ci"]
    assert fit["overhead_law"] == "quadratic" and fit["alpha"] == pytest.approx(TRUE["alpha"], rel=0.05)
    assert lo <= fit["alpha"] <= hi and hi - lo < 0.2 * TRUE["alpha"]
    assert fit["e_opt"] == pytest.approx(10.0, rel=0.15)
    assert fit["e_opt_integer"] == 8  # the best of the measured E (S(8) < S(16) for the truth)
    assert fit["holdout_mape"] < 10 and fit["paired"] is False
    # 1 % noise, 9 repetitions: S(16) is 10 % slower than S(8), so E = 8 alone is the fastest.
    assert entry["measured_best_e"] == 8 and fit["tied_set"] == [8] and entry["verdict"] == "agree"
    assert (tmp_path / "fit.png").stat().st_size > 10_000
    assert fit["predicted_slowdown"] == [0.0, 0.0, 0.0]  # the law's E is the fastest
    # S(16) is 10 % slower than S(8) by the truth
    point, low, high = fit["slowdown"]["16"]
    assert 0 < low < point < high and point == pytest.approx(0.10, abs=0.03)
    out = capsys.readouterr().out
    assert "law=quadratic" in out and "the law's E is +0.0% [+0.0, +0.0] slower than the fastest" in out


def test_fit_dir_auto_chooses_a_law_and_reports_all(tmp_path, capsys):
    _write_sweep(tmp_path, seed=1)
    assert main(["fit", str(tmp_path), "--bootstrap", "50", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)["groups"][0]["fits"]["train_step"]["fit"]
    assert fit["overhead_law"] in fit["laws"] and len(fit["laws"]) >= 3
    assert fit["laws"]["quadratic"]["cv_error"] < fit["laws"]["none"]["cv_error"]


def test_fit_dir_without_measurements_is_a_clear_error(tmp_path, capsys):
    with ResultStore(tmp_path) as store:
        store.open_for(SweepSpec(name="empty", kind="measure", grid={"E": [1]}))
    assert main(["fit", str(tmp_path)]) == 2
    assert "no finished sectional measurement points" in capsys.readouterr().err
