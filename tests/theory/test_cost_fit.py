"""Fitting seconds(E): recovery of known coefficients, interval coverage, holdout, bad data, file formats."""

import json
import math

import numpy as np
import pytest

from theory import InputError, fit_cost_model, load_measurements, measurements_from_records
from theory.eopt import minimise_series

TRUE = {0: 0.5, -1: 2.0, -2: 4.0, 2: 0.002}  # parallel basis: const, inv_e, inv_e2, alpha
GRID = np.array([1, 2, 4, 8, 16, 32, 64])


def synthetic(seed, coeffs=TRUE, grid=GRID, reps=8, noise=0.03):
    rng = np.random.default_rng(seed)
    e = np.repeat(grid, reps)
    mean = sum(c * e.astype(float) ** k for k, c in coeffs.items())
    return e, mean * np.exp(rng.normal(0.0, noise, e.size))


def records(e, s):
    return [{"E": int(a), "seconds": float(b)} for a, b in zip(e, s)]


def test_noise_free_timings_are_recovered_exactly():
    e, s = synthetic(0, noise=0.0)
    fit = fit_cost_model(records(e, s), bootstrap=0)
    assert fit.coefficients == pytest.approx({"const": 0.5, "inv_e": 2.0, "inv_e2": 4.0, "alpha": 0.002}, rel=1e-6)
    assert fit.e_opt == pytest.approx(minimise_series(TRUE), rel=1e-6)
    assert fit.alpha_ci is None and fit.holdout_mape is None


def test_intervals_cover_the_truth_most_of_the_time():
    true_e = minimise_series(TRUE)
    alpha_hits = e_hits = 0
    seeds = range(40)
    for seed in seeds:
        fit = fit_cost_model(records(*synthetic(seed)), bootstrap=100, seed=seed)
        alpha_hits += fit.alpha_ci[0] <= TRUE[2] <= fit.alpha_ci[1]
        e_hits += fit.e_opt_ci[0] <= true_e <= fit.e_opt_ci[1]
        assert fit.alpha_ci[0] <= fit.alpha <= fit.alpha_ci[1]
    assert alpha_hits / len(seeds) >= 0.8
    assert e_hits / len(seeds) >= 0.8


def test_work_basis_and_linear_latency_term():
    coeffs = {0: 1.0, -1: 3.0, 1: 0.01, 2: 0.0005}
    e, s = synthetic(1, coeffs=coeffs, noise=0.0)
    fit = fit_cost_model(records(e, s), regime="work", linear=True, bootstrap=0)
    assert fit.coefficients == pytest.approx({"const": 1.0, "inv_e": 3.0, "linear": 0.01, "alpha": 0.0005}, rel=1e-6)


def test_holdout_predicts_large_e_from_small_e():
    e, s = synthetic(2)
    fit = fit_cost_model(records(e, s), holdout_above=16, bootstrap=0)
    assert fit.n_train == 5 * 8
    assert 0.0 < fit.holdout_mape < 10.0
    # a basis missing the E^2 overhead cannot extrapolate: the held-out error must show it.
    wrong = fit_cost_model(records(e, s), regime="work", holdout_above=16, bootstrap=0)
    assert wrong.holdout_mape > 2 * fit.holdout_mape


def test_robust_loss_resists_outliers_that_bias_least_squares():
    e, s = synthetic(3, noise=0.005)
    s = s.copy()
    s[e == 64] *= np.where(np.arange(8) < 2, 5.0, 1.0)  # two stalled repetitions at the largest E
    plain = fit_cost_model(records(e, s), bootstrap=0)
    robust = fit_cost_model(records(e, s), bootstrap=0, robust=True)
    assert abs(robust.alpha / TRUE[2] - 1) < 0.05
    assert abs(plain.alpha / TRUE[2] - 1) > 2 * abs(robust.alpha / TRUE[2] - 1)


def test_integer_optimum_uses_feasibility_when_d0_is_given():
    e, s = synthetic(4, noise=0.0)
    free = fit_cost_model(records(e, s), bootstrap=0)
    assert free.e_opt_integer in (math.floor(free.e_opt), math.ceil(free.e_opt))
    constrained = fit_cost_model(records(e, s), bootstrap=0, d0=96, heads=3, max_devices=8)
    assert constrained.e_opt_integer in (1, 2, 4, 8) and constrained.e_opt_integer == 8


@pytest.mark.parametrize(
    "rows, match",
    [
        ([{"E": 1, "seconds": float("nan")}], "finite"),
        ([{"E": 1, "seconds": 1.0}, {"E": 2, "seconds": 0.0}], "> 0"),
        ([{"E": 1, "seconds": 1.0}, {"E": 2, "seconds": -3.0}], "> 0"),
        ([{"E": 0, "seconds": 1.0}], "E must be integers"),
        ([{"E": 1.5, "seconds": 1.0}], "E must be integers"),
        ([{"E": 1, "secs": 1.0}], "missing"),
        ([{"E": "x", "seconds": 1.0}], "numbers"),
        ([], "no rows"),
    ],
)
def test_bad_records_are_rejected(rows, match):
    with pytest.raises(InputError, match=match):
        fit_cost_model(rows, bootstrap=0)


def test_too_few_distinct_e_for_the_free_coefficients_is_an_error():
    e, s = synthetic(5, grid=np.array([1, 2, 4]))
    with pytest.raises(InputError, match="3 distinct E .* 4 free coefficients"):
        fit_cost_model(records(e, s), bootstrap=0)
    fit_cost_model(records(e, s), regime="work", bootstrap=0)  # three coefficients: enough


def test_holdout_and_bootstrap_misuse_are_errors():
    e, s = synthetic(6)
    with pytest.raises(InputError, match="both sides"):
        fit_cost_model(records(e, s), holdout_above=64)
    with pytest.raises(InputError, match="distinct E"):
        fit_cost_model(records(e, s), holdout_above=4)
    one_each = records(GRID, np.ones(GRID.size))
    with pytest.raises(InputError, match="repetitions"):
        fit_cost_model(one_each, bootstrap=10)


def test_components_must_be_chosen_when_mixed():
    e, s = synthetic(7)
    rows = [{**r, "component": "attn"} for r in records(e, s)] + [{**r, "component": "ffn"} for r in records(e, 2 * s)]
    with pytest.raises(InputError, match="components"):
        fit_cost_model(rows, bootstrap=0)
    attn = fit_cost_model(rows, bootstrap=0, component="attn")
    ffn = fit_cost_model(rows, bootstrap=0, component="ffn")
    assert ffn.alpha == pytest.approx(2 * attn.alpha, rel=1e-6)
    with pytest.raises(InputError, match="not in the records"):
        fit_cost_model(rows, bootstrap=0, component="qkv")


def test_csv_and_json_lines_load_the_same_records(tmp_path):
    e, s = synthetic(8, reps=2)
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("E,seconds,d\n" + "".join(f"{a},{float(b)!r},64\n" for a, b in zip(e, s)))
    jsonl_path = tmp_path / "m.jsonl"
    jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in records(e, s)))
    a, b = load_measurements(csv_path), load_measurements(jsonl_path)
    np.testing.assert_array_equal(a.experts, b.experts)
    np.testing.assert_array_equal(a.seconds, b.seconds)
    assert a.component is None
    assert measurements_from_records(records(e, s)).experts.dtype.kind == "i"


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("no_header.csv", "experts,time\n1,2\n", "header"),
        ("bad.jsonl", '{"E": 1, "seconds": 2}\nnot json\n', "line 2"),
        ("bad_value.csv", "E,seconds\n1,fast\n", "row 1"),
    ],
)
def test_malformed_files_are_rejected(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        load_measurements(path)
    with pytest.raises(InputError, match="cannot read"):
        load_measurements(tmp_path / "missing.csv")
