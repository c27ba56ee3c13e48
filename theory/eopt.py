"""E_opt: closed forms, the numeric minimiser, and the best feasible integer.

All three work on S(E) = sum_k c_k E^k with k in {-2..2} and c_k >= 0. Such an S is convex on
E > 0 (every term is), so dS/dE is increasing and has at most one root: that root is E_opt,
and the best integer in any candidate set is found by comparing S, with no local minima to fear.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from theory.cost_model import CostModel
from theory.errors import InputError

DOMINANT_TERMS = ("qkv", "attention")


def series_value(coeffs: dict[int, float], experts) -> np.ndarray | float:
    e = np.asarray(experts, dtype=float)
    return sum(c * e**k for k, c in coeffs.items())


def _series_slope(coeffs: dict[int, float], e: float) -> float:
    return sum(k * c * e ** (k - 1) for k, c in coeffs.items() if k != 0)


def minimise_series(coeffs: dict[int, float]) -> float:
    """The continuous minimiser of sum_k c_k E^k over E > 0 (0 or inf when S is monotone).

    Setting dS/dE = 0 and multiplying by E^3 gives the quartic 2 c2 E^4 + c1 E^3 - c-1 E - 2 c-2 = 0;
    we bracket its single positive root on dS/dE rather than take polynomial roots, because the
    coefficients span many orders of magnitude and companion-matrix roots lose precision there.
    """
    if any(not math.isfinite(c) or c < 0 for c in coeffs.values()):
        raise InputError(f"cost coefficients must be finite and >= 0, got {coeffs}")
    if any(k not in (-2, -1, 0, 1, 2) for k in coeffs):
        raise InputError(f"cost terms must have powers of E in -2..2, got {sorted(coeffs)}")
    if not any(coeffs.get(k, 0.0) > 0 for k in (1, 2)):
        return math.inf  # nothing grows with E: more experts are always cheaper
    if not any(coeffs.get(k, 0.0) > 0 for k in (-1, -2)):
        return 0.0  # nothing shrinks with E: fewer experts are always cheaper
    lo, hi = 1.0, 1.0
    while _series_slope(coeffs, lo) >= 0:
        lo /= 2.0
    while _series_slope(coeffs, hi) <= 0:
        hi *= 2.0
    return float(brentq(lambda e: _series_slope(coeffs, e), lo, hi, xtol=1e-300, rtol=1e-13, maxiter=500))


def e_opt_numeric(model: CostModel) -> float:
    """E_opt of the full model (every enabled term), by the numeric minimiser."""
    return minimise_series(model.power_coefficients())


def e_opt_closed_form(model: CostModel, dominant: str = "qkv") -> float:
    """E_opt when one E-decreasing term dominates: S ~ const + c / E^k + alpha E^2.

    dS/dE = -k c E^-(k+1) + 2 alpha E = 0 gives E_opt = (k c / (2 alpha))^(1/(k+2)).
    "qkv": k = 2 (parallel) or 1 (work); the FFN expert term shares that power and is included.
    "attention": k = 1, parallel only (summed over experts the attention work does not depend on E).
    The linear terms (latency; the experts' indexers in the work regime) are ignored here;
    e_opt_numeric includes them. With sparse attention the "attention" coefficient is L' k d0, so
    the attention-dominated E_opt scales as (k / L')^(1/3).
    """
    if dominant not in DOMINANT_TERMS:
        raise InputError(f"dominant must be one of {DOMINANT_TERMS}, got {dominant!r}")
    if dominant == "attention" and model.regime == "work":
        raise InputError("dominant='attention' has no closed form in the work regime: that term is constant in E")
    power = {"qkv": 2, "attention": 1}[dominant] if model.regime == "parallel" else 1
    c = model.power_coefficients()[-power]
    return (power * c / (2.0 * model.alpha)) ** (1.0 / (power + 2))


def feasible_experts(d0: int, heads: int = 1, max_devices: int | None = None) -> list[int]:
    """E that split d0 evenly into slices that each hold whole heads, and fit the devices."""
    if max_devices is not None and max_devices < 1:
        raise InputError(f"max_devices must be >= 1, got {max_devices}")
    limit = d0 if max_devices is None else min(d0, max_devices)
    found = [e for e in divisors(d0) if e <= limit and (d0 // e) % heads == 0]
    if not found:
        cap = "" if max_devices is None else f", E <= max_devices={max_devices}"
        raise InputError(f"no E satisfies E | d0={d0}, (d0/E) % heads={heads} == 0{cap}; "
                         f"check that heads divides d0" + (" or raise --max-devices" if cap else ""))
    return found


def divisors(n: int) -> list[int]:
    """All divisors of n >= 1 in increasing order, by trial division up to sqrt(n) (a scan up to n
    took minutes for a prime d0 near 1e9)."""
    if n < 1:
        raise InputError(f"d0 must be >= 1, got {n}")
    small = [k for k in range(1, math.isqrt(n) + 1) if n % k == 0]
    return small + [n // k for k in reversed(small) if k * k != n]


def best_integer(coeffs: dict[int, float], candidates) -> int:
    """The candidate E with the lowest S (ties go to the smaller E)."""
    candidates = sorted(set(int(e) for e in candidates))
    costs = series_value(coeffs, np.asarray(candidates, dtype=float))
    return candidates[int(np.argmin(costs))]


def nearest_integers(e_opt: float) -> list[int]:
    """By convexity the best unconstrained integer is floor or ceil of the continuous optimum."""
    if not math.isfinite(e_opt):
        raise InputError("E_opt is unbounded (no cost grows with E); no integer optimum exists")
    return sorted({max(1, math.floor(e_opt)), max(1, math.ceil(e_opt))})


def e_opt_integer(model: CostModel, max_devices: int | None = None) -> int:
    """The best E with E | d0, (d0 / E) % heads == 0 and E <= max_devices."""
    return best_integer(model.power_coefficients(), feasible_experts(model.d0, model.heads, max_devices))
