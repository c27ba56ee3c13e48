"""The exchange as latency + bandwidth, and which part of S(E)'s growing term it explains.

t = t0 + a * messages + b * bytes, per device: a is seconds per message (latency), b seconds per byte
(inverse bandwidth), t0 the fixed cost of launching the exchange. It is linear in (t0, a, b), all
>= 0, so it is solved like the cost fit (non-negative least squares on relative residuals), from
timings across E (messages per device = E - 1 for an all-to-all) and payload sizes at fixed E, which
together separate a from b. Intervals resample repetitions within each (messages, bytes) setting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from theory.cost_fit import json_safe, percentile_ci, solve_relative
from theory.errors import InputError
from theory.overhead_laws import overhead_value

EXCHANGE_TERMS = ("t0", "a", "b")


@dataclass(frozen=True)
class ExchangeFit:
    """t0 (s), a (s per message), b (s per byte), their intervals (None without bootstrap)."""

    t0: float
    a: float
    b: float
    ci: dict[str, tuple[float, float]] | None
    n: int

    def predict(self, messages, bytes_) -> np.ndarray:
        return self.t0 + self.a * np.asarray(messages, dtype=float) + self.b * np.asarray(bytes_, dtype=float)

    def to_json(self) -> dict:
        return json_safe(asdict(self))


def all_to_all_messages(experts) -> np.ndarray:
    """Messages one device sends in an all-to-all among E devices (not to itself)."""
    return np.asarray(experts, dtype=float) - 1.0


def fit_exchange(messages, bytes_, seconds, *, bootstrap: int = 200, confidence: float = 0.95,
                 seed: int = 0) -> ExchangeFit:
    """One row per timed repetition: messages and bytes per device, seconds."""
    m, nb, s = (np.asarray(v, dtype=float) for v in (messages, bytes_, seconds))
    if not (m.shape == nb.shape == s.shape and m.ndim == 1 and m.size > 0):
        raise InputError(f"messages, bytes and seconds must be equally long 1-D, got {m.shape}, {nb.shape}, {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0) or np.any(m < 0) or np.any(nb < 0):
        raise InputError("seconds must be finite and > 0, messages and bytes >= 0")
    settings = np.unique(np.stack([m, nb], axis=1), axis=0)
    if settings.shape[0] < 3 or np.unique(settings[:, 0]).size < 2 or np.unique(settings[:, 1]).size < 2:
        raise InputError(f"{settings.shape[0]} (messages, bytes) settings cannot separate latency from bandwidth; "
                         "time at least 2 message counts (E) and 2 payload sizes, 3 settings in all")
    columns = np.stack([np.ones_like(m), m, nb], axis=1)
    theta = solve_relative(columns, s)
    ci = None
    if bootstrap > 0:
        groups = [np.flatnonzero((m == mm) & (nb == bb)) for mm, bb in settings]
        rng = np.random.default_rng(seed)
        draws = np.empty((bootstrap, 3))
        for i in range(bootstrap):
            idx = np.concatenate([rng.choice(g, size=g.size, replace=True) for g in groups])
            draws[i] = solve_relative(columns[idx], s[idx])
        ci = {name: percentile_ci(draws[:, j], confidence) for j, name in enumerate(EXCHANGE_TERMS)}
    return ExchangeFit(float(theta[0]), float(theta[1]), float(theta[2]), ci, int(s.size))


def attribute_growth(experts, step: dict[str, float], exchange: dict[str, float],
                     expert_compute: dict[str, float]) -> list[dict]:
    """Per E: the growth of each fitted overhead term since the smallest E, and the shares of the
    step's growth that the exchange-only and experts-only programs account for.

    step / exchange / expert_compute: coefficients of a law fitted to each program alone
    (theory.overhead_laws.OverheadLawFit.coefficients). The remainder is growth neither program explains.
    """
    e = np.asarray(sorted(set(int(x) for x in experts)), dtype=float)
    growth = {name: overhead_value(coeffs, e) - overhead_value(coeffs, e[:1])
              for name, coeffs in (("step", step), ("exchange", exchange), ("expert_compute", expert_compute))}
    rows = []
    for i, value in enumerate(e):
        total = float(growth["step"][i])
        row = {"E": int(value), "step_growth_s": total,
               "exchange_growth_s": float(growth["exchange"][i]),
               "expert_compute_growth_s": float(growth["expert_compute"][i])}
        for part in ("exchange", "expert_compute"):
            row[f"{part}_share"] = row[f"{part}_growth_s"] / total if total > 0 else None
        row["unexplained_s"] = total - row["exchange_growth_s"] - row["expert_compute_growth_s"]
        rows.append(row)
    return rows
