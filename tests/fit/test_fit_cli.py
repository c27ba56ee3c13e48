"""`smoe fit FILE`: today's JSON keys for the chosen law, every law beside it, the verdict, errors."""

import json

import numpy as np
import pytest

from smoe.cli import main
from smoe.fit.series import FIT_JSON_KEYS, LAW_JSON_KEYS
from theory.overhead_laws import LAWS


def _measurements(tmp_path, overhead=lambda e: 0.002 * e**2):
    rng = np.random.default_rng(0)
    e = np.repeat([1, 2, 4, 8, 16, 32, 64], 6)
    s = (0.5 + 2 / e + 4 / e**2 + overhead(e)) * np.exp(rng.normal(0, 0.02, e.size))
    path = tmp_path / "timings.csv"
    path.write_text("E,seconds,component\n" + "".join(f"{a},{b},layer\n" for a, b in zip(e, s)))
    return path


def _json(argv, capsys):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_fit_json_keeps_todays_keys_and_adds_every_law(tmp_path, capsys):
    data = _json(["fit", str(_measurements(tmp_path)), "--holdout-above", "16", "--bootstrap", "30"], capsys)
    assert list(data)[: len(FIT_JSON_KEYS)] == list(FIT_JSON_KEYS)
    assert data["overhead_law"] == "quadratic" and set(data["laws"]) == set(LAWS)
    assert all(list(law) == list(LAW_JSON_KEYS) for law in data["laws"].values())
    assert data["alpha"] == pytest.approx(0.002, rel=0.1) and data["alpha_ci"][0] <= data["alpha"] <= data["alpha_ci"][1]
    assert set(data["coefficients"]) == {"const", "inv_e", "inv_e2", "alpha"}
    assert data["holdout_mape"] < 10 and isinstance(data["e_opt_integer"], int)
    # Repetitions of a CSV are each E's own samples: unpaired, no dense baseline, so no drift figure.
    assert data["paired"] is False and data["drift_cv"] is None
    assert data["verdict"] in ("agree", "consistent", "disagree") and data["measured_best_e"] in data["tied_set"]
    assert data["predicted_best_e"] in (1, 2, 4, 8, 16, 32, 64)  # the law's best among the measured E
    assert sum(data["p_fastest"].values()) == pytest.approx(1.0)
    assert data["predicted_slowdown"] == data["slowdown"][str(data["predicted_best_e"])]
    assert data["slowdown"][str(data["measured_best_e"])] == [0.0, 0.0, 0.0]
    data = _json(["fit", str(_measurements(tmp_path)), "--bootstrap", "0"], capsys)
    # The largest E is held out by default, as for a sweep DIR; no bootstrap means no intervals, no verdict.
    assert data["holdout_mape"] < 10 and data["alpha_ci"] is None and data["verdict"] is None


def test_forced_law_and_a_law_without_alpha(tmp_path, capsys):
    path = _measurements(tmp_path, overhead=lambda e: 0.05 * (e - 1))
    data = _json(["fit", str(path), "--bootstrap", "0", "--overhead", "linear"], capsys)
    assert data["overhead_law"] == "linear" and data["alpha"] is None
    assert data["coefficients"]["beta"] == pytest.approx(0.05, rel=0.1)
    assert _json(["fit", str(path), "--bootstrap", "0"], capsys)["overhead_law"] == "linear"


def test_fit_human_output(tmp_path, capsys):
    assert main(["fit", str(_measurements(tmp_path)), "--bootstrap", "20", "--holdout-above", "16"]) == 0
    out = capsys.readouterr().out
    assert "overhead law=quadratic" in out and "held-out MAPE (E > 16)" in out and "verdict:" in out
    assert out.count("leave-one-E-out error") == len(LAWS)


@pytest.mark.parametrize("argv, message", [
    (["--overhead", "cubic"], "--overhead must be one of"),
    (["--regime", "fast"], "regime must be one of"),
])
def test_bad_options_are_one_line_errors_with_exit_2(tmp_path, capsys, argv, message):
    assert main(["fit", str(_measurements(tmp_path))] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0


def test_missing_file_is_an_error(capsys):
    assert main(["fit", "missing.csv"]) == 2
    assert "cannot read" in capsys.readouterr().err
