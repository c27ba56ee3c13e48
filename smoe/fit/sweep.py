"""`smoe fit DIR`: fit the theory cost model to a measurement sweep and say whether E_opt holds up.

Sectional points are grouped by every setting except E and the mesh (which follows E), and each
group with enough distinct E gets two fits (smoe/fit/series.py): the whole train step (S(E)) and
the expert-stage exchange alone (the communication that alpha*E^2 stands for). Today's records time
each E in its own point, so each E's repetitions are its rounds, unpaired (`paired: false`).
The predicted best E is chosen among the measured E, so the verdict compares like with like.
Writes DIR/fit.json and DIR/fit.png.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from smoe.errors import UserError
from smoe.fit.series import fit_series
from smoe.measure.point import CONFIG_KEYS, MEASURE_KEYS
from smoe.sweep.store import ResultStore
from theory.overhead_laws import n_parameters
from theory.rounds import unpaired_rounds

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


def fit_group(rows: list[dict], program: str, regime: str, args) -> dict:
    """Every overhead law on one program's timings across E, the measured optimum and the verdict."""
    rows = sorted(rows, key=lambda r: r["E"])
    rounds = unpaired_rounds({row["E"]: row[f"{program}.samples_s"] for row in rows})
    # By default hold out the largest E: the fit on the rest predicts where the overhead matters most.
    holdout = args.holdout_above if args.holdout_above is not None else int(rounds.experts[-2])
    fit = fit_series(rounds, regime=regime, overhead=args.overhead, bootstrap=args.bootstrap,
                     confidence=args.confidence, seed=args.seed, holdout_above=holdout,
                     robust=args.robust, candidates=rounds.experts.tolist())
    return {"program": program, "fit": fit, "measured_best_e": fit["measured_best_e"], "verdict": fit["verdict"],
            "measured": [{"E": row["E"], "median_s": row[f"{program}.median_s"], "samples_s": row[f"{program}.samples_s"]}
                         for row in rows]}


def fit_sweep(directory: Path, args) -> dict:
    """args: the `smoe fit` options (overhead, regime, holdout_above, bootstrap, confidence, seed, robust)."""
    with ResultStore(directory, create=False) as store:
        rows = store.rows()
    groups = group_rows(rows)
    if not groups:
        raise UserError(f"fit: {directory} holds no finished sectional measurement points; run `smoe sweep` first")
    regime = args.regime or default_regime(rows)
    # Leave-one-E-out needs one E more than the smallest law (no overhead term) has coefficients.
    needed = n_parameters("none", regime) + 1
    fitted = []
    for setting, members in groups.items():
        if len({row["E"] for row in members}) < needed:
            continue
        fits = {program: fit_group(members, program, regime, args)
                for program in FITTED_PROGRAMS if f"{program}.samples_s" in members[0]}
        fitted.append({"setting": dict(setting), "fits": fits})
    if not fitted:
        raise UserError(f"fit: no group in {directory} has enough distinct E for the {regime!r} basis "
                        f"({needed} needed); add E values to the sweep")
    return {"directory": str(directory), "regime": regime, "overhead": args.overhead,
            "holdout_above": args.holdout_above, "bootstrap": args.bootstrap, "context": {k: rows[0].get(k) for k in
                                                ("backend", "device_count", "jax_version", "machine", "cpu_count")},
            "groups": fitted}


def write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def summary_lines(result: dict) -> list[str]:
    lines = [f"regime: {result['regime']}, overhead law: {result['overhead']} (bootstrap {result['bootstrap']})"]
    for group in result["groups"]:
        setting = ", ".join(f"{k}={v}" for k, v in group["setting"].items())
        lines.append(f"[{setting}]")
        for program, entry in group["fits"].items():
            fit = entry["fit"]
            mape = "n/a" if fit["holdout_mape"] is None else f"{fit['holdout_mape']:.1f}% (largest E held out)"
            law = fit["laws"][fit["overhead_law"]]
            lines.append(f"  {program:10s} law={fit['overhead_law']} {_coefficients(fit['coefficients'])}  "
                         f"E_opt={_num(fit['e_opt'])} CI={_interval(fit['e_opt_ci'])}  "
                         f"best measured E by the law={fit['predicted_best_e']}  leave-one-E-out={100 * law['cv_error']:.1f}%  "
                         f"held-out MAPE={mape}")
            lines.append(f"  {'':10s} measured fastest E={entry['measured_best_e']} tied set={fit['tied_set']} "
                         f"paired={str(fit['paired']).lower()} -> {entry['verdict']}")
    return lines


def _coefficients(coefficients: dict) -> str:
    return " ".join(f"{name}={value:.3g}" for name, value in coefficients.items())


def _num(value) -> str:
    return "inf" if value is None else f"{value:.3g}"


def _interval(ci) -> str:
    return "n/a" if ci is None else f"[{_num(ci[0])}, {_num(ci[1])}]"


def median_band(samples: list[float]) -> tuple[float, float, float]:
    q25, q50, q75 = np.percentile(samples, [25, 50, 75])
    return float(q25), float(q50), float(q75)


def run_cli(args) -> int:
    """`smoe fit DIR` (the theory CLI's arguments; DIR instead of a CSV)."""
    from smoe.fit.figure import write_figure

    directory = Path(args.measurements)
    result = fit_sweep(directory, args)
    write_json_atomic(directory / "fit.json", result)
    write_figure(result, directory / "fit.png")
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(summary_lines(result)))
        print(f"wrote {directory / 'fit.json'} and {directory / 'fit.png'}")
    return 0
