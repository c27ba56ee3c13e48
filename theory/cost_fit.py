"""Fit the cost model to measured seconds(E): alpha, the other coefficients, E_opt, intervals.

seconds(E) = sum_k c_k E^k over the powers the chosen regime's terms have (see BASES), every
c_k >= 0 because each is a cost. The model is linear in the c_k, so the default solver is
non-negative least squares; residuals are relative (divided by the measured time) because
timings across E span orders of magnitude and their noise is roughly proportional to them.
Intervals come from a bootstrap that resamples repetitions within each E, so every replicate
keeps the design (the set of E) fixed and only the measurement noise varies.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import least_squares, nnls

from theory.eopt import best_integer, feasible_experts, minimise_series, nearest_integers, series_value
from theory.errors import InputError
from theory.measurements import Measurements, measurements_from_records

# Powers of E that the cost-model terms take in each reading (theory/README.md, "Fitting"):
# pre-expert terms -> E^0; parallel: QKV/FFN experts -> E^-2, attention experts -> E^-1;
# work: QKV/FFN experts -> E^-1, attention experts -> E^0. Overhead alpha -> E^2.
BASES = {"parallel": (0, -1, -2, 2), "work": (0, -1, 2)}
COEFFICIENT_NAMES = {0: "const", -1: "inv_e", -2: "inv_e2", 1: "linear", 2: "alpha"}


@dataclass(frozen=True)
class CostFit:
    """Fitted coefficients (seconds per E^k), E_opt and percentile-bootstrap intervals.

    The *_ci fields are None when bootstrap=0; holdout_mape (percent) is None without a holdout.
    e_opt_integer is None when the fitted cost has no finite optimum and no d0 was given.
    """

    alpha: float
    alpha_ci: tuple[float, float] | None
    coefficients: dict[str, float]
    coefficient_ci: dict[str, tuple[float, float]] | None
    e_opt: float
    e_opt_ci: tuple[float, float] | None
    e_opt_integer: int | None
    holdout_mape: float | None
    regime: str
    n_train: int

    def to_json(self) -> dict:
        """Plain JSON types; non-finite numbers (an unbounded E_opt) become null."""
        return json_safe(asdict(self))


def json_safe(value):
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def basis_powers(regime: str, linear: bool = False) -> tuple[int, ...]:
    if regime not in BASES:
        raise InputError(f"regime must be one of {tuple(BASES)}, got {regime!r}")
    return BASES[regime] + ((1,) if linear else ())


def _solve(experts: np.ndarray, seconds: np.ndarray, powers: tuple[int, ...], robust: bool, f_scale: float) -> np.ndarray:
    columns = experts[:, None].astype(float) ** np.asarray(powers, dtype=float)[None, :]
    return solve_relative(columns, seconds, robust, f_scale)


def solve_relative(columns: np.ndarray, seconds: np.ndarray, robust: bool = False, f_scale: float = 0.05) -> np.ndarray:
    """Non-negative coefficients theta minimising sum(((columns @ theta) - seconds) / seconds)^2."""
    design = columns / seconds[:, None]
    # Columns span many decades (E^-2 vs E^2); scaling them to unit max keeps NNLS well conditioned.
    scale = np.abs(design).max(axis=0)
    scale[scale == 0] = 1.0
    scaled = design / scale
    target = np.ones_like(seconds)
    theta, _ = nnls(scaled, target)
    if robust:
        start = np.maximum(theta, 1e-12)
        theta = least_squares(
            lambda t: scaled @ t - target, start, bounds=(0.0, np.inf), loss="soft_l1", f_scale=f_scale
        ).x
    return theta / scale


def percentile_ci(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    # inverted_cdf never interpolates, so an unbounded (inf) E_opt replicate cannot produce NaN.
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(samples, [tail, 1.0 - tail], method="inverted_cdf")
    return float(lo), float(hi)


def _bootstrap(train: Measurements, powers, robust, f_scale, n_boot: int, seed: int) -> np.ndarray:
    groups = [np.flatnonzero(train.experts == e) for e in np.unique(train.experts)]
    if all(len(g) < 2 for g in groups):
        raise InputError("bootstrap needs >= 2 repetitions at some E; add repetitions or pass --bootstrap 0")
    rng = np.random.default_rng(seed)
    thetas = np.empty((n_boot, len(powers)))
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        thetas[b] = _solve(train.experts[idx], train.seconds[idx], powers, robust, f_scale)
    return thetas


def fit_cost_model(
    records: Measurements | Iterable[Mapping],
    *,
    regime: str = "parallel",
    linear: bool = False,
    robust: bool = False,
    f_scale: float = 0.05,
    holdout_above: int | None = None,
    bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    component: str | None = None,
    d0: int | None = None,
    heads: int = 1,
    max_devices: int | None = None,
) -> CostFit:
    """Fit seconds(E) and report alpha, E_opt and their intervals.

    holdout_above: fit only on E <= this and report the MAPE (percent) of predicting larger E.
    robust: soft-L1 loss (f_scale is in relative-residual units) instead of plain least squares.
    d0/heads/max_devices: restrict the integer E_opt to feasible E, as e_opt_integer does.
    """
    data = records if isinstance(records, Measurements) else measurements_from_records(records)
    data = data.select(component)
    powers = basis_powers(regime, linear)
    if not (0.0 < confidence < 1.0):
        raise InputError(f"confidence must be in (0, 1), got {confidence}")
    if bootstrap < 0:
        raise InputError(f"bootstrap must be >= 0, got {bootstrap}")
    if not (math.isfinite(f_scale) and f_scale > 0):
        raise InputError(f"f_scale must be > 0, got {f_scale}")

    train, test = data, None
    if holdout_above is not None:
        below = data.experts <= holdout_above
        if below.all() or not below.any():
            raise InputError(
                f"holdout_above={holdout_above} must leave records on both sides (E range "
                f"{data.experts.min()}..{data.experts.max()}); pick an E inside it"
            )
        train, test = data.subset(below), data.subset(~below)
    distinct = np.unique(train.experts).size
    if distinct < len(powers):
        names = [COEFFICIENT_NAMES[p] for p in powers]
        raise InputError(
            f"{distinct} distinct E in the fitted records but {len(powers)} free coefficients {names}; "
            f"measure at least {len(powers)} distinct E"
        )

    theta = _solve(train.experts, train.seconds, powers, robust, f_scale)
    coeffs = dict(zip(powers, theta.tolist()))
    e_opt = minimise_series(coeffs)
    if d0 is not None:
        e_int = best_integer(coeffs, feasible_experts(d0, heads, max_devices))
    elif math.isfinite(e_opt):
        cands = [e for e in nearest_integers(e_opt) if max_devices is None or e <= max_devices] or [max_devices]
        e_int = best_integer(coeffs, cands)
    else:
        e_int = None

    alpha_ci = e_ci = coef_ci = None
    if bootstrap > 0:
        thetas = _bootstrap(train, powers, robust, f_scale, bootstrap, seed)
        e_samples = np.array([minimise_series(dict(zip(powers, t))) for t in thetas])
        coef_ci = {COEFFICIENT_NAMES[p]: percentile_ci(thetas[:, i], confidence) for i, p in enumerate(powers)}
        alpha_ci = coef_ci["alpha"]
        e_ci = percentile_ci(e_samples, confidence)

    mape = None
    if test is not None:
        predicted = series_value(coeffs, test.experts)
        mape = float(100.0 * np.mean(np.abs(predicted - test.seconds) / test.seconds))

    return CostFit(
        alpha=coeffs[2],
        alpha_ci=alpha_ci,
        coefficients={COEFFICIENT_NAMES[p]: c for p, c in coeffs.items()},
        coefficient_ci=coef_ci,
        e_opt=e_opt,
        e_opt_ci=e_ci,
        e_opt_integer=e_int,
        holdout_mape=mape,
        regime=regime,
        n_train=int(train.experts.size),
    )
