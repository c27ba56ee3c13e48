"""Loss laws fitted to a `kind: train` sweep (used by `smoe quality report`): Clark et al.'s L(N, E) for sectional MoE, and loss vs budget.

Clark's form has four parameters, so it is fitted only where more than four distinct (N, E)
settings exist (theory refuses fewer); its data also go to a CSV for `smoe fit-law --form clark`.
Loss vs budget is the pure power law L = k C^-gamma through each family's best setting per budget:
with two budgets it is determined exactly by the seed means, so its interval reflects seed noise
only; an irreducible-loss floor (L = c + k C^-gamma) would need at least three budgets.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from smoe.atomic import atomic_path
from smoe.quality.report import Setting, best_per_label, expert_settings, iso_flop_labels

CLARK_PARAMETERS = 4


def clark_groups(all_settings: list[Setting]) -> dict[tuple, list[Setting]]:
    """Sectional settings per (budget, shorten) in the loss-vs-E slices, plus the other widths at that
    budget and shortening, so N varies as well as E."""
    anchors = {(s.budget, s.shorten) for s in expert_settings(all_settings)}
    groups: dict[tuple, list[Setting]] = {}
    for s in all_settings:
        if s.family == "sectional" and (s.budget, s.shorten) in anchors:
            groups.setdefault((s.budget, s.shorten), []).append(s)
    return groups


def write_clark_csv(settings: list[Setting], path: Path) -> None:
    """N = total parameters, E, loss = seed-mean final val CE (nats): the columns `smoe fit-law` reads."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["N", "E", "loss", "d_model"])
        for s in settings:
            writer.writerow([s.runs[0]["params_total"], s.n_experts, s.mean("val_ce"), s.d_model])


def fit_clark_group(settings: list[Setting], bootstrap: int, progress: bool = True) -> dict:
    from theory import fit_clark

    if len(settings) <= CLARK_PARAMETERS:
        return {"fitted": False, "n_points": len(settings),
                "reason": f"Clark's law has {CLARK_PARAMETERS} parameters; "
                          f"{len(settings)} (N, E) settings cannot determine it"}
    fit = fit_clark([s.runs[0]["params_total"] for s in settings], [s.n_experts for s in settings],
                    [s.mean("val_ce") for s in settings], bootstrap=bootstrap, progress=progress)
    return {"fitted": True, **fit.to_json()}


def fit_budget_law(all_settings: list[Setting], bootstrap: int, seed: int = 0) -> dict[str, dict]:
    """Per iso-FLOP family: gamma and k of L = k C^-gamma (L = val CE in nats, C = training FLOPs),
    by least squares in log space through the seed-mean loss of the best setting per budget; the
    percentile interval resamples seeds within each budget."""
    budgets = sorted({s.budget for s in all_settings})
    if len(budgets) < 2:
        return {}
    rng = np.random.default_rng(seed)
    fits = {}
    for label in iso_flop_labels(all_settings):
        per_budget = [np.array([run["val_ce"] for run in best_per_label(all_settings, c, [label])[label].runs])
                      for c in budgets]
        gamma, log_k = _power_law(budgets, [losses.mean() for losses in per_budget])
        draws = [_power_law(budgets, [rng.choice(losses, losses.size).mean() for losses in per_budget])[0]
                 for _ in range(bootstrap)]
        interval = [float(q) for q in np.quantile(draws, [0.025, 0.975])] if bootstrap else None
        fits[label] = {"gamma": gamma, "k": float(np.exp(log_k)), "gamma_ci95": interval,
                       "budgets": budgets, "losses": [float(losses.mean()) for losses in per_budget]}
    return fits


def _power_law(budgets: list[float], losses: list[float]) -> tuple[float, float]:
    slope, intercept = np.polyfit(np.log(budgets), np.log(losses), 1)
    return float(-slope), float(intercept)
