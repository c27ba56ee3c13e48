"""`smoe fit DIR` on a sweep directory whose timings follow a known cost curve."""

import json

import numpy as np
import pytest

import theory
from smoe.cli import main
from smoe.measure.fit_sweep import verdict
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
    assert main(["fit", str(tmp_path), "--bootstrap", "100"]) == 0
    result = json.loads((tmp_path / "fit.json").read_text())
    assert result["regime"] == "work", "CPU-emulated devices share cores: the work reading is the default"
    (group,) = result["groups"]
    entry = group["fits"]["train_step"]
    lo, hi = entry["fit"]["alpha_ci"]
    assert entry["fit"]["alpha"] == pytest.approx(TRUE["alpha"], rel=0.05)
    assert lo <= entry["fit"]["alpha"] <= hi and hi - lo < 0.2 * TRUE["alpha"]
    assert entry["fit"]["e_opt"] == pytest.approx(10.0, rel=0.15)
    assert entry["fit"]["e_opt_integer"] in (8, 16)  # feasible: divides d=128
    assert entry["holdout"]["fit_on_e_at_most"] == 16 and entry["holdout"]["mape_percent"] < 10
    assert entry["measured_best_e"] == 8 and entry["verdict"].startswith(("agree", "DISAGREE"))
    assert (tmp_path / "fit.png").stat().st_size > 10_000
    assert "alpha=" in capsys.readouterr().out


def test_verdict_states_agreement_and_disagreement():
    records = [{"E": e, "seconds": TRUE["const"] + TRUE["inv_e"] / e + TRUE["alpha"] * e**2}
               for e in (1, 2, 4, 8, 16, 32) for _ in range(2)]
    fit = theory.fit_cost_model(records, regime="work", bootstrap=0, d0=128)
    assert fit.e_opt_integer == 8
    assert verdict(fit, 8).startswith("agree")
    assert verdict(fit, 2).startswith("DISAGREE") and "fit predicts E = 8" in verdict(fit, 2)


def test_fit_dir_without_measurements_is_a_clear_error(tmp_path, capsys):
    with ResultStore(tmp_path) as store:
        store.open_for(SweepSpec(name="empty", kind="measure", grid={"E": [1]}))
    assert main(["fit", str(tmp_path)]) == 2
    assert "no finished sectional measurement points" in capsys.readouterr().err
