"""The overhead law of S(E), chosen by the data: none, alpha*E^2, beta*(E-1), both, or gamma*E^p.

seconds(E) = (the work or parallel basis of theory/cost_fit.py, without its E^2 column) + overhead(E).
The paper assumes overhead = alpha*E^2; per-device all-to-all measurements grow sub-linearly to
linearly in E (README section "Choosing the overhead law"), so each family is fitted and the one that
best predicts an E it has not seen wins. Every law is fitted to the per-E medians of the rounds with
non-negative coefficients on relative residuals (cost_fit.solve_relative); the power law profiles its
exponent p over [0, 3]. Choice: leave-one-E-out mean relative error with the one-standard-error rule
(the fewest-parameter law within one standard error of the best); then, because the richer families
contain the simpler ones and leave-one-out still prefers them on noise in a fixed share of cases, a
chosen law gives way to a simpler law it contains unless a chi-square test on the per-E medians
(noise from the rounds) rejects the simpler one at 95 %. AICc is reported beside it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import brentq, minimize_scalar
from scipy.stats import chi2

from theory.cost_fit import BASES, COEFFICIENT_NAMES, json_safe, percentile_ci, solve_relative
from theory.eopt import feasible_experts, nearest_integers
from theory.errors import InputError
from theory.rounds import Rounds

# Overhead coefficients of each law, in fitting order; "p" (power only) is profiled, not linear.
LAWS = {"none": (), "quadratic": ("alpha",), "linear": ("beta",), "both": ("beta", "alpha"), "power": ("gamma",)}
OVERHEAD_CHOICES = ("auto",) + tuple(LAWS)
POWER_RANGE = (0.0, 3.0)
# A richer law and the simpler laws it contains (power: p = 1 or 2; both: alpha = 0 or beta = 0).
NESTS = {"quadratic": ("none",), "linear": ("none",), "both": ("linear", "quadratic"), "power": ("linear", "quadratic")}
# Rounds per E needed to estimate the noise of a median for the nested test.
MIN_ROUNDS_FOR_TEST = 3
POWER_OF = {name: power for power, name in COEFFICIENT_NAMES.items()}


@dataclass(frozen=True)
class OverheadLawFit:
    """One law: coefficients in seconds (plus the exponent p for power), intervals, E_opt, scores.

    cv_error: mean |relative error| of predicting each E's median from a fit on the other E.
    aicc: over every sample's relative residual; k counts the fitted coefficients (and p).
    """

    law: str
    coefficients: dict[str, float]
    coefficient_ci: dict[str, tuple[float, float]] | None
    e_opt: float
    e_opt_ci: tuple[float, float] | None
    e_opt_integer: int | None
    cv_error: float
    cv_se: float
    aicc: float

    def to_json(self) -> dict:
        return json_safe(asdict(self))


@dataclass(frozen=True)
class OverheadLaws:
    """Every law that the data can determine, and the chosen one (by cv_error, or forced)."""

    laws: dict[str, OverheadLawFit]
    chosen: str
    regime: str

    @property
    def fit(self) -> OverheadLawFit:
        return self.laws[self.chosen]


def base_names(regime: str) -> tuple[str, ...]:
    if regime not in BASES:
        raise InputError(f"regime must be one of {tuple(BASES)}, got {regime!r}")
    return tuple(COEFFICIENT_NAMES[k] for k in BASES[regime] if k != 2)


def n_parameters(law: str, regime: str) -> int:
    return len(base_names(regime)) + len(LAWS[law]) + (law == "power")


def law_value(coeffs: dict[str, float], experts) -> np.ndarray:
    """seconds(E) of a fitted law."""
    e = np.asarray(experts, dtype=float)
    return sum(_column(name, coeffs.get("p"), e) * c for name, c in coeffs.items() if name != "p")


def overhead_value(coeffs: dict[str, float], experts) -> np.ndarray:
    """The growing (overhead) part alone: alpha*E^2 + beta*(E-1) + gamma*E^p."""
    e = np.asarray(experts, dtype=float)
    return sum((_column(n, coeffs.get("p"), e) * coeffs[n] for n in ("alpha", "beta", "gamma") if n in coeffs),
               np.zeros_like(e))


def _column(name: str, p: float | None, e: np.ndarray) -> np.ndarray:
    if name == "beta":
        return e - 1.0
    if name == "gamma":
        return e**p
    return e ** POWER_OF[name]


def _slope(coeffs: dict[str, float], e: float) -> float:
    slope = sum(POWER_OF[n] * c * e ** (POWER_OF[n] - 1) for n, c in coeffs.items() if n in POWER_OF)
    return slope + coeffs.get("beta", 0.0) + coeffs.get("gamma", 0.0) * coeffs.get("p", 0.0) * e ** (coeffs.get("p", 1.0) - 1)


def law_e_opt(coeffs: dict[str, float]) -> float:
    """The continuous minimiser over E > 0 (inf when nothing grows, 0 when nothing shrinks).

    E^2 * dS/dE is increasing for every law here (p >= 0), so dS/dE has at most one root. Closed
    forms where one shrinking and one growing term remain (work reading): quadratic
    (c/(2 alpha))^(1/3), linear sqrt(c/beta), power (c/(gamma p))^(1/(p+1)), with c = inv_e.
    """
    grow = {n: coeffs.get(n, 0.0) for n in ("alpha", "beta")}
    grow["gamma"] = coeffs.get("gamma", 0.0) * coeffs.get("p", 0.0)
    shrink = {n: coeffs.get(n, 0.0) for n in ("inv_e", "inv_e2")}
    if not any(v > 0 for v in grow.values()):
        return math.inf
    if not any(v > 0 for v in shrink.values()):
        return 0.0
    if shrink["inv_e2"] == 0 and sum(v > 0 for v in grow.values()) == 1:
        c = shrink["inv_e"]
        if grow["alpha"] > 0:
            return (c / (2.0 * grow["alpha"])) ** (1.0 / 3.0)
        if grow["beta"] > 0:
            return math.sqrt(c / grow["beta"])
        return (c / grow["gamma"]) ** (1.0 / (coeffs["p"] + 1.0))
    lo, hi = 1.0, 1.0
    while _slope(coeffs, lo) >= 0:
        lo /= 2.0
    while _slope(coeffs, hi) <= 0:
        hi *= 2.0
    return float(brentq(lambda e: _slope(coeffs, e), lo, hi, rtol=1e-12, maxiter=500))


def fit_overhead_law(law: str, regime: str, experts, medians, robust: bool = False) -> dict[str, float]:
    """Coefficients of one law fitted to one median per E."""
    e, y = np.asarray(experts, dtype=float), np.asarray(medians, dtype=float)
    names = base_names(regime) + LAWS[law]

    def solve(p):
        columns = np.stack([_column(n, p, e) for n in names], axis=1)
        theta = solve_relative(columns, y, robust)
        return theta, float(np.sum(((columns @ theta) - y) ** 2 / y**2))

    if law != "power":
        return dict(zip(names, solve(None)[0].tolist()))
    grid = np.linspace(*POWER_RANGE, 31)
    start = grid[int(np.argmin([solve(p)[1] for p in grid]))]
    step = grid[1] - grid[0]
    bounds = (max(POWER_RANGE[0], start - step), min(POWER_RANGE[1], start + step))
    p = float(minimize_scalar(lambda q: solve(q)[1], bounds=bounds, method="bounded",
                              options={"xatol": 1e-4}).x)
    return {**dict(zip(names, solve(p)[0].tolist())), "p": p}


def _cv(law: str, regime: str, experts: np.ndarray, medians: np.ndarray, robust: bool) -> tuple[float, float]:
    errors = []
    for j in range(experts.size):
        keep = np.arange(experts.size) != j
        coeffs = fit_overhead_law(law, regime, experts[keep], medians[keep], robust)
        errors.append(abs(float(law_value(coeffs, experts[j])) - medians[j]) / medians[j])
    errors = np.asarray(errors)
    return float(errors.mean()), float(errors.std(ddof=1) / math.sqrt(errors.size))


def _aicc(coeffs: dict[str, float], rounds: Rounds, k: int) -> float:
    predicted = law_value(coeffs, rounds.experts)[None, :]
    residuals = ((rounds.samples - predicted) / predicted)[np.isfinite(rounds.samples)]
    n = residuals.size
    if n - k - 1 <= 0:
        return math.inf
    return float(n * math.log(max(np.mean(residuals**2), 1e-300)) + 2 * k + 2 * k * (k + 1) / (n - k - 1))


def _best_integer(coeffs, e_opt, candidates, d0, heads, max_devices) -> int | None:
    if candidates is None and d0 is not None:
        candidates = feasible_experts(d0, heads, max_devices)
    if candidates is None:
        if not math.isfinite(e_opt):
            return None
        candidates = [e for e in nearest_integers(e_opt) if max_devices is None or e <= max_devices] or [max_devices]
    return best_candidate(coeffs, candidates)


def best_candidate(coeffs: dict[str, float], candidates) -> int:
    """The candidate E where the law is lowest (ties go to the smaller E)."""
    candidates = sorted({int(e) for e in candidates})
    return candidates[int(np.argmin(law_value(coeffs, candidates)))]


def fit_overhead_laws(rounds: Rounds, *, regime: str = "parallel", overhead: str = "auto", bootstrap: int = 200,
                      confidence: float = 0.95, seed: int = 0, robust: bool = False, candidates=None,
                      d0: int | None = None, heads: int = 1, max_devices: int | None = None) -> OverheadLaws:
    """Fit every law the data can determine and choose one (overhead="auto") or take the named one.

    candidates: the E that e_opt_integer may take (e.g. the measured E); else the divisors of d0
    (with heads, max_devices), else the integers next to E_opt.
    """
    if overhead not in OVERHEAD_CHOICES:
        raise InputError(f"--overhead must be one of {OVERHEAD_CHOICES}, got {overhead!r}")
    if not (0.0 < confidence < 1.0) or bootstrap < 0:
        raise InputError(f"need 0 < confidence < 1 and bootstrap >= 0, got {confidence}, {bootstrap}")
    experts, medians = rounds.experts.astype(float), rounds.medians()
    # Leave-one-E-out must still leave as many E as coefficients.
    usable = [law for law in LAWS if experts.size - 1 >= n_parameters(law, regime)]
    if overhead != "auto" and overhead not in usable:
        raise InputError(f"the {overhead!r} law has {n_parameters(overhead, regime)} coefficients in the {regime} "
                         f"reading; measure at least {n_parameters(overhead, regime) + 1} distinct E "
                         f"(have {experts.size})")
    if not usable:
        raise InputError(f"{experts.size} distinct E cannot choose an overhead law; measure at least "
                         f"{n_parameters('none', regime) + 1}")
    point = {law: fit_overhead_law(law, regime, experts, medians, robust) for law in usable}
    replicates: dict[str, list[dict]] = {law: [] for law in usable}
    rng = np.random.default_rng(seed)
    for _ in range(bootstrap):
        resampled = np.nanmedian(rounds.resample(rng), axis=0)
        for law in usable:
            replicates[law].append(fit_overhead_law(law, regime, experts, resampled, robust))
    fits = {}
    for law in usable:
        coeffs, e_opt = point[law], law_e_opt(point[law])
        coef_ci = e_ci = None
        if bootstrap:
            coef_ci = {n: percentile_ci(np.array([r[n] for r in replicates[law]]), confidence) for n in coeffs}
            e_ci = percentile_ci(np.array([law_e_opt(r) for r in replicates[law]]), confidence)
        cv, se = _cv(law, regime, experts, medians, robust)
        fits[law] = OverheadLawFit(law, coeffs, coef_ci, e_opt, e_ci,
                           _best_integer(coeffs, e_opt, candidates, d0, heads, max_devices), cv, se,
                           _aicc(coeffs, rounds, n_parameters(law, regime)))
    chosen = overhead if overhead != "auto" else choose_law(fits, regime, rounds)
    return OverheadLaws(fits, chosen, regime)


def choose_law(fits: dict[str, OverheadLawFit], regime: str, rounds: Rounds) -> str:
    """One-standard-error rule on cv_error, then give way to a contained law the data cannot reject."""
    best = min(fits.values(), key=lambda f: f.cv_error)
    within = [f for f in fits.values() if f.cv_error <= best.cv_error + best.cv_se]
    chosen = min(within, key=lambda f: (n_parameters(f.law, regime), f.cv_error)).law
    counts = np.isfinite(rounds.samples).sum(axis=0)
    if counts.min() < MIN_ROUNDS_FOR_TEST:
        return chosen
    medians = rounds.medians()
    # Standard error of a median: sqrt(pi/2) * sd / sqrt(n) for roughly normal noise.
    se = np.maximum(1.2533 * np.nanstd(rounds.samples, axis=0, ddof=1) / np.sqrt(counts), 1e-12 * medians)

    def chi2_of(law):
        return float(np.sum(((law_value(fits[law].coefficients, rounds.experts) - medians) / se) ** 2))

    while True:
        kept = [law for law in NESTS.get(chosen, ()) if law in fits and chi2_of(law) - chi2_of(chosen)
                < chi2.ppf(0.95, n_parameters(chosen, regime) - n_parameters(law, regime))]
        if not kept:
            return chosen
        chosen = min(kept, key=lambda law: fits[law].cv_error)


def holdout_mape(rounds: Rounds, law: str, regime: str, above: int, robust: bool = False) -> float:
    """Percent error of predicting every sample at E > above from the law fitted on E <= above."""
    below = rounds.experts <= above
    if below.all() or not below.any():
        raise InputError(f"holdout_above={above} must leave E on both sides (E range "
                         f"{rounds.experts.min()}..{rounds.experts.max()}); pick an E inside it")
    coeffs = fit_overhead_law(law, regime, rounds.experts[below], rounds.medians()[below], robust)
    held = rounds.samples[:, ~below]
    predicted = np.broadcast_to(law_value(coeffs, rounds.experts[~below]), held.shape)
    ok = np.isfinite(held)
    return float(100.0 * np.mean(np.abs(predicted[ok] - held[ok]) / held[ok]))
