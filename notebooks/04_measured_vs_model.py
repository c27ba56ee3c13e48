# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. Measured S(E) against the fitted cost model
#
# Reads the committed outputs of `smoe sweep` + `smoe fit` (`experiments/results/<name>/measurements.csv`
# and `fit.json`):
# * `default`: 8 emulated CPU devices in one process (`experiments/configs/default.yaml`);
# * `multiprocess`: the same 8 devices split over 2 and 4 local processes (`multiprocess.yaml`).
#
# Set `SMOE_REMEASURE=1` to re-run both sweeps and fits into a temporary folder first (several
# minutes on 2 cores) instead of reading the committed files.
#
# Each panel: the median train-step (or exchange) time per E with its interquartile range, the fitted
# seconds(E) = sum_k c_k E^k in the reading `smoe fit` used (recorded in `fit.json`; emulated CPU
# devices share cores, so it picks **total work**), and a 95% bootstrap band: the repetitions at each
# E are resampled and refitted, as `smoe fit` does for its intervals.

# %%
import os
import subprocess
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import figlib
import theory

SOURCES = {"default": "8 emulated CPU devices, 1 process", "multiprocess": "8 CPU devices over several processes"}
N_BOOT = 200

if os.environ.get("SMOE_REMEASURE") == "1":
    root = Path(tempfile.mkdtemp(prefix="smoe_remeasure_"))
    for name in SOURCES:
        out = root / name
        config = figlib.REPO / "experiments" / "configs" / f"{name}.yaml"
        for command in (["smoe", "sweep", str(config), "--out", str(out), "--no-progress"],
                        ["smoe", "sweep", "--export", str(out), str(out / "measurements.csv")],
                        ["smoe", "fit", str(out), "--bootstrap", str(N_BOOT)]):
            subprocess.run(command, check=True, cwd=figlib.REPO)
else:
    root = figlib.results_root()
print(f"reading results from {root}")

results = {name: (figlib.read_measurements(root / name / "measurements.csv"), figlib.read_fit(root / name / "fit.json"))
           for name in SOURCES}


# %%
def setting_label(setting: dict, keys=("d", "L", "processes", "n_layers", "batch"), sep: str = ", ") -> str:
    return sep.join(f"{k}={setting[k]}" for k in keys if k in setting)


def bootstrap_band(measured: list[dict], regime: str, grid: np.ndarray, seed: int = 0) -> np.ndarray:
    """2.5/97.5 percentiles of refitted seconds(E) over resampled repetitions (within each E)."""
    rng = np.random.default_rng(seed)
    curves = []
    for _ in range(N_BOOT):
        records = [{"E": m["E"], "seconds": s} for m in measured
                   for s in rng.choice(m["samples_s"], size=len(m["samples_s"]), replace=True)]
        fit = theory.fit_cost_model(records, regime=regime, bootstrap=0)
        curves.append(figlib.series(fit.coefficients, grid))
    return np.percentile(curves, [2.5, 97.5], axis=0)


def plot_fit(ax, entry: dict, regime: str, color: str) -> None:
    measured, fit = entry["measured"], entry["fit"]
    e = np.array([m["E"] for m in measured])
    lo, mid, hi = np.array([figlib.quartiles(m["samples_s"]) for m in measured]).T * 1e3
    ax.errorbar(e, mid, yerr=[mid - lo, hi - mid], fmt="o", color=color, capsize=3,
                label="measured median (IQR bars)")
    grid = np.geomspace(e.min() / 1.3, e.max() * 1.3, 200)
    band = bootstrap_band(measured, regime, grid) * 1e3
    ax.fill_between(grid, band[0], band[1], color=color, alpha=0.2, label="fit, 95% bootstrap band")
    ax.plot(grid, figlib.series(fit["coefficients"], grid) * 1e3, color=color, label=f"fit ({regime} basis)")
    e_opt, ci = fit["e_opt"], fit["e_opt_ci"]
    text = "unbounded" if e_opt is None else f"{e_opt:.2g}"
    if ci is not None:
        text += f" [{ci[0]:.2g}, {'inf' if ci[1] is None else f'{ci[1]:.2g}'}]"
    ax.axvline(entry["measured_best_e"], color="black", linestyle=":", label=f"measured fastest E = {entry['measured_best_e']}")
    ax.plot([], [], " ", label=f"fitted E_opt = {text}, best feasible {fit['e_opt_integer']}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(e, labels=[str(v) for v in e])
    ax.set_xlabel("E (number of experts)")


def plot_source(name: str) -> None:
    rows, fit_json = results[name]
    groups, regime = fit_json["groups"], fit_json["regime"]
    programs = [p for p in ("train_step", "exchange") if all(p in g["fits"] for g in groups)]
    fig, axes = plt.subplots(len(programs), len(groups), figsize=(6.5 * len(groups), 4.8 * len(programs)), squeeze=False)
    for col, group in enumerate(groups):
        for row, program in enumerate(programs):
            ax = axes[row, col]
            plot_fit(ax, group["fits"][program], regime, ("tab:blue", "tab:red")[row])
            ax.set_ylabel(f"{program.replace('_', ' ')} time (ms)")
            ax.set_title(f"{program.replace('_', ' ')}: {setting_label(group['setting'])}")
            ax.legend(loc="upper left", fontsize=7)
    fig.suptitle(f"Measured S(E) vs fitted cost model, `{name}` sweep ({SOURCES[name]}; "
                 f"{figlib.READING[regime]} reading)")
    fig.tight_layout()
    figlib.save(fig, f"04_measured_{name}.png")
    plt.show()


# %%
plot_source("default")

# %%
plot_source("multiprocess")

# %% [markdown]
# ## Measured vs predicted E_opt
# For every fitted group: the continuous E_opt of the fit with its bootstrap interval (bar), the best
# feasible integer E of the fit (square) and the E that was measured fastest (cross). When the fitted
# E_opt is 0 (no term shrinks with E enough to pay for the overhead), it sits at the bottom of the plot.

# %%
labels, fitted, intervals, integer, best = [], [], [], [], []
for name in SOURCES:
    fit_json = results[name][1]
    for group in fit_json["groups"]:
        for program, entry in group["fits"].items():
            fit = entry["fit"]
            labels.append(f"{name}\n{setting_label(group['setting'], ('d', 'processes'), chr(10))}\n{program}")
            fitted.append(np.nan if fit["e_opt"] is None else fit["e_opt"])
            ci = fit["e_opt_ci"] or [np.nan, np.nan]
            intervals.append([np.nan if v is None else v for v in ci])
            integer.append(fit["e_opt_integer"])
            best.append(entry["measured_best_e"])
            print(f"{name:12s} {setting_label(group['setting']):40s} {program:10s} {entry['verdict']}")

x = np.arange(len(labels))
intervals = np.array(intervals, dtype=float)
fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(labels)), 5.5))
ax.vlines(x, intervals[:, 0], intervals[:, 1], color="tab:blue", linewidth=6, alpha=0.35, label="fitted E_opt, 95% bootstrap interval")
ax.plot(x, fitted, "o", color="tab:blue", label="fitted E_opt (continuous)")
ax.plot(x, integer, "s", color="tab:green", markerfacecolor="none", markersize=10, label="fitted best feasible E")
ax.plot(x, best, "x", color="black", markersize=10, mew=2, label="measured fastest E")
ax.set_xticks(x, labels=labels, fontsize=7)
ax.set_ylabel("E (number of experts)")
ax.set_ylim(-0.5, max(np.nanmax(intervals[:, 1]) if np.isfinite(intervals[:, 1]).any() else 0, max(best)) + 2)
ax.set_title(f"E_opt: fitted cost model vs measured fastest E ({figlib.READING[results['default'][1]['regime']]} fits)")
ax.legend(loc="upper right")
figlib.save(fig, "04_eopt_measured_vs_predicted.png")
plt.show()
