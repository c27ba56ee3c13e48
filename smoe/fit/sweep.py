"""`smoe fit DIR`: fit the theory cost model to a measurement sweep and say whether E_opt holds up.

Sectional rows are grouped by every setting except E and the mesh (which follows E), and each group
with enough distinct E gets a fit per timed program (smoe/fit/series.py): the whole train step
(S(E)), the expert-stage exchange alone and the expert compute alone. Rows of a setting measured in
rounds (`experts: [...]`, `paired: true`) are paired: each train-step (and forward) sample is divided
by the same round's dense time and rescaled by the dense median, so drift cancels; `drift_cv` is the
dense time's coefficient of variation across rounds. Rows of older sweeps (one point per E) are each
E's own repetitions, unpaired. Per group it also fits the exchange as latency + bandwidth
(theory.exchange_fit) and splits the step's growth into exchange and expert compute.
The predicted best E is chosen among the measured E, so the verdict compares like with like.
Writes DIR/fit.json and DIR/fit.png.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from smoe.accounting import TRAIN_FLOPS_PER_FORWARD
from smoe.errors import UserError
from smoe.fit.series import fit_series, slowdown_text
from smoe.measure.point import CONFIG_KEYS, MEASURE_KEYS
from smoe.sweep.spec import REPEAT_FIELD
from smoe.sweep.store import ResultStore
from theory.exchange_fit import attribute_growth, fit_exchange
from theory.overhead_laws import n_parameters
from theory.rounds import Rounds, paired_rounds, unpaired_rounds

VARYING_WITH_E = {"E", "experts", "mesh_data", "mesh_expert", "repeats", "baselines"}
FITTED_PROGRAMS = ("train_step", "exchange", "experts")
# Programs with a dense counterpart: their samples are divided by the same round's dense time.
DENSE_NORMALISED = ("train_step", "forward")
DENSE_PREFIX = "baseline.dense."


def default_regime(rows: list[dict]) -> str:
    """Emulated CPU devices share the same cores, so time follows total work, not per-device work."""
    return "work" if all(row.get("backend") == "cpu" for row in rows) else "parallel"


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def group_rows(rows: list[dict]) -> dict[tuple, list[dict]]:
    setting_keys = sorted((set(CONFIG_KEYS) | set(MEASURE_KEYS)) - VARYING_WITH_E)
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row.get("kind") != "sectional":
            continue
        # Paired rows pair only with the rows of their own sweep point (a sweep's repeats are not rounds).
        keys = setting_keys + ([REPEAT_FIELD] if row.get("paired") else [])
        setting = tuple((key, _hashable(row[key])) for key in keys if key in row)
        groups.setdefault(setting, []).append(row)
    return groups


def group_rounds(rows: list[dict], program: str) -> Rounds:
    """rows sorted by E -> Rounds: paired (normalised by the dense time for DENSE_NORMALISED) or not."""
    if not all(row.get("paired") for row in rows):
        return unpaired_rounds({row["E"]: row[f"{program}.samples_s"] for row in rows})
    experts = [row["E"] for row in rows]
    samples = np.array([row[f"{program}.samples_s"] for row in rows], dtype=float).T
    dense = np.asarray(rows[0][f"{DENSE_PREFIX}train_step.samples_s"], dtype=float)
    if program in DENSE_NORMALISED:
        return paired_rounds(experts, samples, rows[0][f"{DENSE_PREFIX}{program}.samples_s"])
    return Rounds(np.asarray(experts), samples, paired=True, drift_cv=paired_rounds(experts, samples, dense).drift_cv)


def fit_group(rows: list[dict], program: str, regime: str, args) -> dict:
    """Every overhead law on one program's timings across E, the measured optimum and the verdict."""
    rows = sorted(rows, key=lambda r: r["E"])
    rounds = group_rounds(rows, program)
    # By default hold out the largest E: the fit on the rest predicts where the overhead matters most.
    holdout = args.holdout_above if args.holdout_above is not None else int(rounds.experts[-2])
    fit = fit_series(rounds, regime=regime, overhead=args.overhead, bootstrap=args.bootstrap,
                     confidence=args.confidence, seed=args.seed, holdout_above=holdout,
                     robust=args.robust, candidates=rounds.experts.tolist())
    # What was fitted: the (paired, drift-normalised) samples, one list per E.
    return {"program": program, "fit": fit, "measured_best_e": fit["measured_best_e"], "verdict": fit["verdict"],
            "measured": [{"E": int(e), "median_s": float(np.nanmedian(column)),
                          "samples_s": column[np.isfinite(column)].tolist()}
                         for e, column in zip(rounds.experts, rounds.samples.T)]}


def exchange_latency_bandwidth(rows: list[dict], args) -> dict | None:
    """t = t0 + a*messages + b*bytes per device over every exchange program (E x payload) of the group."""
    m, nb, s = [], [], []
    for row in rows:
        for key in row:
            if key.startswith("exchange") and key.endswith(".messages_per_device"):
                name = key.rsplit(".", 1)[0]
                samples = row[f"{name}.samples_s"]
                m += [row[key]] * len(samples)
                nb += [row[f"{name}.bytes_per_device"]] * len(samples)
                s += samples
    if len(set(m)) < 2 or len(set(nb)) < 2:
        return None
    fit = fit_exchange(m, nb, s, bootstrap=args.bootstrap, confidence=args.confidence, seed=args.seed)
    settings = sorted(set(zip(m, nb)))
    return fit.to_json() | {"settings": [{"messages_per_device": a, "bytes_per_device": b,
                                          "median_s": float(np.median([t for x, y, t in zip(m, nb, s)
                                                                       if (x, y) == (a, b)]))}
                                         for a, b in settings]}


def growth_split(fits: dict, rows: list[dict], regime: str) -> dict | None:
    """The step's growing term split into exchange and expert compute, each fitted with the step's law.

    The experts program is one device's forward share; the step also runs its backward (train FLOPs
    = 3 x forward, smoe.accounting), and in the work reading (devices sharing the cores) it spends
    devices x that, so the experts coefficients are scaled by 3 (x the mesh size in the work reading).
    """
    if not all(p in fits and fits[p]["fit"]["laws"] for p in FITTED_PROGRAMS):
        return None
    law = fits["train_step"]["fit"]["overhead_law"]
    if any(law not in fits[p]["fit"]["laws"] for p in FITTED_PROGRAMS):
        return None
    devices = rows[0]["mesh_data"] * rows[0]["mesh_expert"] if regime == "work" else 1
    scale = TRAIN_FLOPS_PER_FORWARD * devices
    coefficients = {p: fits[p]["fit"]["laws"][law]["coefficients"] for p in FITTED_PROGRAMS}
    experts_scaled = {k: (v if k == "p" else scale * v) for k, v in coefficients["experts"].items()}
    measured = {p: {m["E"]: m["median_s"] for m in fits[p]["measured"]} for p in FITTED_PROGRAMS}
    split = attribute_growth(sorted(measured["train_step"]), coefficients["train_step"], coefficients["exchange"],
                             experts_scaled)
    e0 = min(measured["train_step"])
    for row in split:
        e = row["E"]
        row["measured_step_growth_s"] = measured["train_step"][e] - measured["train_step"][e0]
        row["measured_exchange_growth_s"] = measured["exchange"][e] - measured["exchange"][e0]
        row["measured_expert_compute_growth_s"] = scale * (measured["experts"][e] - measured["experts"][e0])
    return {"law": law, "expert_compute_scale": scale, "rows": split, "dominant": _dominant(split[-1])}


def _dominant(row: dict) -> str:
    """Which part explains most of the step's growth at the largest E (by the fitted laws)."""
    if not row["step_growth_s"] > 0:
        return "no growth"
    parts = {"exchange": row["exchange_growth_s"], "expert compute": row["expert_compute_growth_s"],
             "neither (unexplained)": row["unexplained_s"]}
    return max(parts, key=parts.get)


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
        fitted.append({"setting": dict(setting), "paired": fits["train_step"]["fit"]["paired"],
                       "drift_cv": fits["train_step"]["fit"]["drift_cv"],
                       "rounds": members[0].get("rounds"), "fits": fits,
                       "exchange_latency_bandwidth": exchange_latency_bandwidth(members, args),
                       "growth_split": growth_split(fits, members, regime)})
    if not fitted:
        raise UserError(f"fit: no group in {directory} has enough distinct E for the {regime!r} basis "
                        f"({needed} needed); add E values to the sweep")
    return {"directory": str(directory), "regime": regime, "overhead": args.overhead,
            "holdout_above": args.holdout_above, "bootstrap": args.bootstrap, "context": {k: rows[0].get(k) for k in
                                                ("backend", "device_count", "process_count", "jax_version", "machine",
                                                 "cpu_count")},
            "groups": fitted}


def write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def summary_lines(result: dict) -> list[str]:
    lines = [f"regime: {result['regime']}, overhead law: {result['overhead']} (bootstrap {result['bootstrap']})"]
    for group in result["groups"]:
        setting = ", ".join(f"{k}={v}" for k, v in group["setting"].items())
        drift = "n/a" if group["drift_cv"] is None else f"{100 * group['drift_cv']:.1f}%"
        lines.append(f"[{setting}]  paired={str(group['paired']).lower()} rounds={group['rounds']} "
                     f"dense drift CV={drift}")
        for program, entry in group["fits"].items():
            fit = entry["fit"]
            mape = "n/a" if fit["holdout_mape"] is None else f"{fit['holdout_mape']:.1f}% (largest E held out)"
            law = fit["laws"][fit["overhead_law"]]
            lines.append(f"  {program:10s} law={fit['overhead_law']} {_coefficients(fit['coefficients'])}  "
                         f"E_opt={_num(fit['e_opt'])} CI={_interval(fit['e_opt_ci'])}  "
                         f"best measured E by the law={fit['predicted_best_e']}  leave-one-E-out={100 * law['cv_error']:.1f}%  "
                         f"held-out MAPE={mape}")
            lines.append(f"  {'':10s} measured fastest E={entry['measured_best_e']} tied set={fit['tied_set']} "
                         f"-> verdict: {entry['verdict']}; {slowdown_text(fit)}")
        lines += _exchange_lines(group)
    return lines


def _exchange_lines(group: dict) -> list[str]:
    lines = []
    latency = group.get("exchange_latency_bandwidth")
    if latency:
        ci = latency["ci"] or {}
        lines.append(f"  exchange = t0 + a*messages + b*bytes per device: t0={latency['t0']:.3g} s "
                     f"a={latency['a']:.3g} s/message {_interval(ci.get('a'))}  "
                     f"b={latency['b']:.3g} s/byte {_interval(ci.get('b'))}")
    split = group.get("growth_split")
    if split:
        last = split["rows"][-1]
        lines.append(f"  train-step growth E={split['rows'][0]['E']}->{last['E']} by the {split['law']} law: "
                     f"{1e3 * last['step_growth_s']:.1f} ms, exchange {1e3 * last['exchange_growth_s']:.1f} ms, "
                     f"expert compute (experts program x{split['expert_compute_scale']:g}: backward, devices) "
                     f"{1e3 * last['expert_compute_growth_s']:.1f} ms -> mostly {split['dominant']}; measured median change: "
                     f"step {1e3 * last['measured_step_growth_s']:+.1f} ms, exchange "
                     f"{1e3 * last['measured_exchange_growth_s']:+.1f} ms, expert compute "
                     f"{1e3 * last['measured_expert_compute_growth_s']:+.1f} ms")
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
