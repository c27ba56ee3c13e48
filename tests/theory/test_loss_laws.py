"""Loss-law fits: the Chinchilla reference refit, synthetic recovery of the MoE forms, bad data."""

import csv
from importlib import resources

import numpy as np
import pytest

from theory import InputError, fit_chinchilla, fit_clark, fit_granularity, fit_law, load_chinchilla_reference
from theory.loss_laws import FORMS, UnderdeterminedFit, identifiability_problems


@pytest.fixture(scope="module")
def reference():
    return load_chinchilla_reference()


@pytest.fixture(scope="module")
def chinchilla_fit(reference):
    return fit_chinchilla(reference["N"], reference["D"], reference["loss"], bootstrap=6, seed=0, n_starts=4)


def test_reference_data_is_converted_and_trimmed(reference):
    rows = list(csv.DictReader(resources.files("theory").joinpath("data", "chinchilla_svg_extracted.csv").open()))
    losses = sorted(float(r["loss"]) for r in rows)
    assert reference["loss"].size == len(rows) - 5 == 240
    assert reference["loss"].max() == losses[-6]
    file_pairs = np.array([[float(r["Model Size"]), float(r["Training FLOP"])] for r in rows])
    for n_params, tokens in zip(reference["N"], reference["D"]):
        # D = C / (6 N): each kept (N, 6 N D) must be a row of the file
        assert np.any(np.all(np.isclose(file_pairs, [n_params, 6 * n_params * tokens], rtol=1e-12), axis=1))


def test_chinchilla_refit_lands_on_the_published_values(chinchilla_fit):
    fit = chinchilla_fit
    published = {"E": 1.82, "alpha": 0.35, "beta": 0.37}
    for name, value in published.items():
        assert fit.params[name] == pytest.approx(value, rel=0.02), name
    assert 300 < fit.params["A"] < 700 and 1000 < fit.params["B"] < 4000
    for name, (lo, hi) in fit.ci.items():
        assert lo < hi, name
    assert 1.6 < fit.ci["E"][0] and fit.ci["E"][1] < 2.0


def test_fit_is_huber_on_log_residuals_not_least_squares(reference, chinchilla_fit):
    # With a huge delta the Huber loss is plain least squares; the answer must move.
    ls = fit_law("chinchilla", reference, bootstrap=0, delta=10.0, n_starts=2)
    assert abs(ls.params["alpha"] - chinchilla_fit.params["alpha"]) > 0.005


def _grid(rng, n):
    return 10 ** rng.uniform(7, 10, n), 10 ** rng.uniform(9, 12, n)


def test_granularity_form_recovers_known_parameters():
    rng = np.random.default_rng(0)
    n_params, tokens = _grid(rng, 300)
    g = rng.choice([1, 2, 4, 8, 16, 32], 300).astype(float)
    truth = {"c": 1.7, "g": 300.0, "a": 80.0, "b": 900.0, "gamma": 0.6, "alpha": 0.3, "beta": 0.32}
    loss = truth["c"] + (truth["g"] / g ** truth["gamma"] + truth["a"]) / n_params ** truth["alpha"] + truth["b"] / tokens ** truth["beta"]
    fit = fit_granularity(n_params, tokens, g, loss * np.exp(rng.normal(0, 0.002, 300)), bootstrap=4, n_starts=3)
    for name in ("c", "gamma", "alpha", "beta"):
        assert fit.params[name] == pytest.approx(truth[name], rel=0.05), name
    assert set(fit.ci) == set(truth)


def test_clark_form_recovers_known_parameters():
    rng = np.random.default_rng(1)
    n_params = 10 ** rng.uniform(7, 10, 200)
    experts = rng.choice([1, 4, 16, 64, 256], 200).astype(float)
    a, b, c, d = -0.08, -0.1, 0.004, 2.4
    log_loss = a * np.log(n_params) + b * np.log(experts) + c * np.log(n_params) * np.log(experts) + d
    fit = fit_clark(n_params, experts, np.exp(log_loss + rng.normal(0, 0.002, 200)), bootstrap=8, n_starts=2)
    assert fit.params == pytest.approx({"a": a, "b": b, "c": c, "d": d}, rel=0.05)
    assert fit.ci["c"][0] < fit.params["c"] < fit.ci["c"][1]


@pytest.mark.parametrize(
    "data, match",
    [
        ({"N": [1e9] * 10, "D": [1e10] * 10}, "missing"),
        ({"N": [1e9] * 10, "D": [1e10] * 9, "loss": [2.0] * 10}, "one per point"),
        ({"N": [1e9] * 10, "D": [1e10] * 10, "loss": [2.0] * 9 + [np.nan]}, "finite"),
        ({"N": [1e9] * 10, "D": [1e10] * 10, "loss": [2.0] * 9 + [-1.0]}, "> 0"),
        ({"N": [1e9] * 5, "D": [1e10] * 5, "loss": [2.0] * 5}, "need more"),
    ],
)
def test_bad_law_data_is_rejected(data, match):
    with pytest.raises(InputError, match=match):
        fit_law("chinchilla", data, bootstrap=0)


def test_unknown_form_is_rejected():
    with pytest.raises(InputError, match="form must be one of"):
        fit_law("kaplan", {}, bootstrap=0)


def test_clustered_points_are_reported_underdetermined_and_not_bootstrapped():
    # 11 points within 1% of each other in N and D cannot separate E, A/N^alpha and B/D^beta.
    rng = np.random.default_rng(0)
    n_params, tokens = 1e8 * (1 + 0.01 * rng.random(11)), 2e9 * (1 + 0.01 * rng.random(11))
    loss = 3.0 + 0.01 * rng.random(11)
    with pytest.warns(UnderdeterminedFit, match="underdetermined.*condition number.*bootstrap intervals skipped"):
        fit = fit_chinchilla(n_params, tokens, loss, bootstrap=50, n_starts=2)
    assert fit.ci is None and len(fit.warnings) == 1
    assert fit.to_json()["warnings"] == list(fit.warnings)


def test_the_reference_refit_is_well_determined(reference):
    law = FORMS["chinchilla"]
    fit = fit_law("chinchilla", reference, bootstrap=0, n_starts=2)
    theta = np.array([np.log(fit.params["E"]), np.log(fit.params["A"]), np.log(fit.params["B"]),
                      fit.params["alpha"], fit.params["beta"]])
    log_x = {k: np.log(reference[k]) for k in law.features}
    assert identifiability_problems(law, theta, law.design(log_x)) == [] and fit.warnings == ()
