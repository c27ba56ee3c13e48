"""One timed series (seconds per E, as rounds) -> the `smoe fit` JSON: every overhead law, the chosen
one under today's keys, and the measured optimum with the verdict.

Rounds come from theory.rounds: paired (every E and the dense baseline timed each round, normalised
by the round's dense time) or unpaired (each E's own repetitions; `paired: false` in the output,
and `drift_cv` is null because no baseline was timed beside them).
"""

from __future__ import annotations

import numpy as np

from theory.cost_fit import json_safe
from theory.overhead_laws import best_candidate, fit_overhead_laws, holdout_mape
from theory.rounds import Rounds
from theory.verdict import measured_optimum, verdict

# Today's keys, for the chosen law; null where the law has no such coefficient (alpha without E^2).
FIT_JSON_KEYS = ("alpha", "alpha_ci", "coefficients", "e_opt", "e_opt_ci", "e_opt_integer", "holdout_mape")
LAW_JSON_KEYS = ("coefficients", "coefficient_ci", "e_opt", "e_opt_ci", "e_opt_integer", "cv_error", "aicc")
MIN_ROUNDS_FOR_OPTIMUM = 2


def fit_series(rounds: Rounds, *, regime: str, overhead: str = "auto", bootstrap: int = 200,
               confidence: float = 0.95, seed: int = 0, holdout_above: int | None = None,
               robust: bool = False, candidates=None, d0: int | None = None, heads: int = 1,
               max_devices: int | None = None) -> dict:
    """The JSON of one series; see theory/README.md ("Choosing the overhead law") for every key."""
    fits = fit_overhead_laws(rounds, regime=regime, overhead=overhead, bootstrap=bootstrap, confidence=confidence,
                             seed=seed, robust=robust, candidates=candidates, d0=d0, heads=heads,
                             max_devices=max_devices)
    chosen = fits.fit
    out = {
        "alpha": chosen.coefficients.get("alpha"),
        "alpha_ci": None if chosen.coefficient_ci is None else chosen.coefficient_ci.get("alpha"),
        "coefficients": chosen.coefficients,
        "e_opt": chosen.e_opt,
        "e_opt_ci": chosen.e_opt_ci,
        "e_opt_integer": chosen.e_opt_integer,
        "holdout_mape": None if holdout_above is None else holdout_mape(rounds, fits.chosen, regime, holdout_above,
                                                                        robust),
        "overhead_law": fits.chosen,
        "regime": regime,
        "laws": {name: {k: getattr(law, k) for k in LAW_JSON_KEYS} for name, law in fits.laws.items()},
        "paired": rounds.paired,
        "drift_cv": rounds.drift_cv,
        # The verdict compares like with like: the chosen law's best E among the measured E.
        "predicted_best_e": best_candidate(chosen.coefficients, rounds.experts),
        "p_fastest": None, "tied_set": None, "measured_best_e": None, "slowdown": None, "verdict": None,
        "predicted_slowdown": None,
    }
    counts = np.isfinite(rounds.samples).sum(axis=0)
    if bootstrap > 0 and counts.min() >= MIN_ROUNDS_FOR_OPTIMUM:
        optimum = measured_optimum(rounds, bootstrap=max(bootstrap, 200), confidence=confidence, seed=seed)
        out.update(optimum.to_json())
        out["verdict"] = verdict(out["predicted_best_e"], optimum)
        out["predicted_slowdown"] = out["slowdown"].get(str(out["predicted_best_e"]))
    return json_safe(out)


def slowdown_text(fit: dict) -> str:
    """The law's best measured E against the measured fastest, as the printed summaries say it."""
    if fit["predicted_slowdown"] is None:
        return "slowdown n/a (no measured optimum)"
    point, low, high = (100 * v for v in fit["predicted_slowdown"])
    return f"the law's E is {point:+.1f}% [{low:+.1f}, {high:+.1f}] slower than the fastest"
