"""`smoe fit DIR`: fit the theory cost model to a measurement sweep and say whether E_opt holds up.

Sectional points are grouped by every setting except E and the mesh (which follows E), and each
group with enough distinct E gets two fits: the whole train step (S(E)) and the expert-stage
exchange alone (the communication that alpha*E^2 stands for). Each timed repetition is one record,
so the bootstrap resamples repetitions. Writes DIR/fit.json and DIR/fit.png.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import theory
from smoe.errors import UserError
from smoe.measure.point import CONFIG_KEYS, MEASURE_KEYS
from smoe.sweep.store import ResultStore

VARYING_WITH_E = {"E", "mesh_data", "mesh_expert", "repeats", "baselines"}
FITTED_PROGRAMS = ("train_step", "exchange")


def default_regime(rows: list[dict]) -> str:
    """Emulated CPU devices share the same cores, so time follows total work, not per-device work."""
    return "work" if all(row.get("backend") == "cpu" for row in rows) else "parallel"


def group_rows(rows: list[dict]) -> dict[tuple, list[dict]]:
    setting_keys = sorted((set(CONFIG_KEYS) | set(MEASURE_KEYS)) - VARYING_WITH_E)
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row.get("kind") != "sectional":
            continue
        setting = tuple((key, row[key]) for key in setting_keys if key in row)
        groups.setdefault(setting, []).append(row)
    return groups


def _records(rows: list[dict], program: str) -> list[dict]:
    return [{"E": row["E"], "seconds": s} for row in rows for s in row[f"{program}.samples_s"]]


def measured_best(rows: list[dict], program: str) -> int:
    medians = {row["E"]: row[f"{program}.median_s"] for row in rows}
    return min(medians, key=medians.get)


def verdict(fit: theory.CostFit, best_e: int) -> str:
    predicted = fit.e_opt_integer
    if predicted == best_e:
        return f"agree: the measured fastest E ({best_e}) is the fitted best feasible E"
    return (f"DISAGREE: the measured fastest E is {best_e} but the fit predicts E = {predicted} "
            f"(continuous E_opt {fit.e_opt:.3g}, interval {_interval(fit.e_opt_ci)})")


def auto_holdout(experts: list[int], regime: str, linear: bool = False) -> int | None:
    """Hold out the largest E: the fit on the rest predicts where alpha*E^2 matters most."""
    distinct = sorted(set(experts))
    needed = len(theory.cost_fit.basis_powers(regime, linear))
    return distinct[-2] if len(distinct) > needed else None


def fit_group(rows: list[dict], program: str, regime: str, holdout_above: int | None, bootstrap: int,
              seed: int, linear: bool = False) -> dict:
    """The fit on every E (what E_opt comes from) and, separately, the held-out check."""
    d, heads = rows[0]["d"], rows[0].get("expert_heads", 1)
    records = _records(rows, program)
    fit = theory.fit_cost_model(records, regime=regime, linear=linear, bootstrap=bootstrap, seed=seed, d0=d,
                                heads=heads)
    cut = holdout_above if holdout_above is not None else auto_holdout([r["E"] for r in rows], regime, linear)
    holdout = None
    if cut is not None:
        held = theory.fit_cost_model(records, regime=regime, linear=linear, holdout_above=cut, bootstrap=0, d0=d,
                                     heads=heads)
        holdout = {"fit_on_e_at_most": cut, "mape_percent": held.holdout_mape, "alpha": held.alpha}
    best = measured_best(rows, program)
    return {"program": program, "fit": fit.to_json(), "holdout": holdout, "measured_best_e": best,
            "verdict": verdict(fit, best),
            "measured": [{"E": row["E"], "median_s": row[f"{program}.median_s"], "samples_s": row[f"{program}.samples_s"]}
                         for row in sorted(rows, key=lambda r: r["E"])]}


def fit_sweep(directory: Path, regime: str | None, holdout_above: int | None, bootstrap: int, seed: int,
              linear: bool = False) -> dict:
    with ResultStore(directory, create=False) as store:
        rows = store.rows()
    groups = group_rows(rows)
    if not groups:
        raise UserError(f"fit: {directory} holds no finished sectional measurement points; run `smoe sweep` first")
    regime = regime or default_regime(rows)
    fitted = []
    for setting, members in groups.items():
        if len({row["E"] for row in members}) < len(theory.cost_fit.basis_powers(regime, linear)):
            continue
        fits = {program: fit_group(members, program, regime, holdout_above, bootstrap, seed, linear)
                for program in FITTED_PROGRAMS if f"{program}.samples_s" in members[0]}
        fitted.append({"setting": dict(setting), "fits": fits})
    if not fitted:
        raise UserError(f"fit: no group in {directory} has enough distinct E for the {regime!r} basis "
                        f"({len(theory.cost_fit.basis_powers(regime, linear))} needed); add E values to the sweep")
    return {"directory": str(directory), "regime": regime, "linear": linear, "holdout_above": holdout_above,
            "bootstrap": bootstrap, "context": {k: rows[0].get(k) for k in
                                                ("backend", "device_count", "jax_version", "machine", "cpu_count")},
            "groups": fitted}


def write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def summary_lines(result: dict) -> list[str]:
    basis = " + linear E term" if result["linear"] else ""
    lines = [f"regime: {result['regime']}{basis} (fit of seconds(E) = sum_k c_k E^k, bootstrap {result['bootstrap']})"]
    for group in result["groups"]:
        setting = ", ".join(f"{k}={v}" for k, v in group["setting"].items())
        lines.append(f"[{setting}]")
        for program, entry in group["fits"].items():
            fit, holdout = entry["fit"], entry["holdout"]
            mape = "n/a" if holdout is None else f"{holdout['mape_percent']:.1f}% (fit on E<={holdout['fit_on_e_at_most']})"
            lines.append(f"  {program:10s} alpha={fit['alpha']:.3e} s CI={_interval(fit['alpha_ci'])}  "
                         f"E_opt={_num(fit['e_opt'])} CI={_interval(fit['e_opt_ci'])}  "
                         f"best feasible E={fit['e_opt_integer']}  held-out MAPE={mape}")
            lines.append(f"  {'':10s} {entry['verdict']}")
    return lines


def _num(value) -> str:
    return "inf" if value is None else f"{value:.3g}"


def _interval(ci) -> str:
    return "n/a" if ci is None else f"[{_num(ci[0])}, {_num(ci[1])}]"


def median_band(samples: list[float]) -> tuple[float, float, float]:
    q25, q50, q75 = np.percentile(samples, [25, 50, 75])
    return float(q25), float(q50), float(q75)


def run_cli(args) -> int:
    """`smoe fit DIR` (the theory CLI's arguments; DIR instead of a CSV)."""
    from smoe.measure.fit_figure import write_figure

    directory = Path(args.measurements)
    result = fit_sweep(directory, args.regime, args.holdout_above, args.bootstrap, args.seed, args.linear)
    write_json_atomic(directory / "fit.json", result)
    write_figure(result, directory / "fit.png")
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(summary_lines(result)))
        print(f"wrote {directory / 'fit.json'} and {directory / 'fit.png'}")
    return 0
