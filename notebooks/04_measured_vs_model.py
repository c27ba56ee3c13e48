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
# # 4. Measured S(E) against the cost model, and which overhead law the data choose
#
# Reads the committed outputs of `smoe sweep` + `smoe fit` (`experiments/results/<name>/measurements.csv`
# and `fit.json`):
# * `default`: 8 emulated CPU devices in one process (`experiments/configs/default.yaml`). Each width
#   is one setting: all its E and the dense baseline were timed in rounds, in a freshly shuffled order
#   each round, so every sample is divided by its round's dense time (times the dense median) and the
#   machine's drift cancels (**paired**);
# * `multiprocess`: the same 8 devices split over 2, 4 and 8 local processes (`multiprocess.yaml`),
#   committed from before the paired design: each E timed on its own (**unpaired**), fitted with the
#   paper's alpha*E^2 law only.
#
# Set `SMOE_REMEASURE=1` to re-run both sweeps and fits into a temporary folder first (many minutes
# on 2 cores) instead of reading the committed files.

# %%
import os
import subprocess
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import figlib

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


def verdict_of(entry: dict) -> str:
    """agree / consistent / disagree (the pre-pairing fit.json spelt it out in a sentence)."""
    return entry["verdict"].split(":")[0].lower()


def median_band(samples: list[float], rng: np.random.Generator) -> tuple[float, float, float]:
    """The median and a 95% bootstrap interval of it (resampling rounds)."""
    samples = np.asarray(samples)
    medians = [np.median(rng.choice(samples, samples.size)) for _ in range(N_BOOT)]
    return float(np.median(samples)), *np.percentile(medians, [2.5, 97.5])


def plot_laws(ax, entry: dict, color: str) -> None:
    """Every round's (drift-normalised) sample, the median with its band, every law's curve; the chosen law bold."""
    measured, fit = entry["measured"], entry["fit"]
    e = np.array([m["E"] for m in measured])
    rng = np.random.default_rng(0)
    for m in measured:
        ax.plot([m["E"]] * len(m["samples_s"]), np.array(m["samples_s"]) * 1e3, ".", color=color, alpha=0.25, ms=4)
    mid, lo, hi = np.array([median_band(m["samples_s"], rng) for m in measured]).T * 1e3
    ax.errorbar(e, mid, yerr=[mid - lo, hi - mid], fmt="o", color=color, capsize=3,
                label="median, 95% band (rounds resampled)")
    grid = np.geomspace(e.min() / 1.3, e.max() * 1.3, 200)
    for law, values in fit.get("laws", {}).items():
        chosen = law == fit["overhead_law"]
        ax.plot(grid, figlib.series(values["coefficients"], grid) * 1e3, linewidth=2.2 if chosen else 0.9,
                alpha=1 if chosen else 0.7, color="black" if chosen else None,
                label=f"{law}{' (chosen)' if chosen else ''}: leave-one-E-out {100 * values['cv_error']:.1f}%")
    if "laws" not in fit:  # the pre-pairing format: one alpha*E^2 fit
        ax.plot(grid, figlib.series(fit["coefficients"], grid) * 1e3, color="black", label="alpha*E^2 fit")
    tied = fit.get("tied_set")
    if tied:
        ax.axvspan(min(tied) / 1.15, max(tied) * 1.15, color="tab:green", alpha=0.12,
                   label=f"tied with the fastest at 95%: {tied}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(e, labels=[str(v) for v in e])
    ax.set_xlabel("E (number of experts)")
    ax.set_title(f"verdict: {verdict_of(entry)} (law's best measured E "
                 f"{fit.get('predicted_best_e', fit['e_opt_integer'])}, fastest {entry['measured_best_e']})", fontsize=9)


def plot_source(name: str, programs=("train_step", "exchange", "experts")) -> None:
    rows, fit_json = results[name]
    groups = fit_json["groups"]
    programs = [p for p in programs if all(p in g["fits"] for g in groups)]
    fig, axes = plt.subplots(len(programs), len(groups), figsize=(6.5 * len(groups), 4.8 * len(programs)),
                             squeeze=False)
    for col, group in enumerate(groups):
        drift = group.get("drift_cv")
        for row, program in enumerate(programs):
            ax = axes[row, col]
            plot_laws(ax, group["fits"][program], ("tab:blue", "tab:red", "tab:purple")[row])
            ax.set_ylabel(f"{program.replace('_', ' ')} time (ms)")
            ax.set_title(f"{program.replace('_', ' ')}: {setting_label(group['setting'])}"
                         + ("" if drift is None else f", dense drift CV {100 * drift:.1f}%") + "\n"
                         + ax.get_title(), fontsize=9)
            ax.legend(loc="upper center", fontsize=6)
    paired = all(g.get("paired") for g in groups)
    fig.suptitle(f"`{name}` sweep ({SOURCES[name]}; {'paired, drift-normalised' if paired else 'unpaired'}; "
                 f"{figlib.READING[fit_json['regime']]} reading)")
    fig.tight_layout()
    figlib.save(fig, f"04_measured_{name}.png")
    plt.show()


# %%
plot_source("default")

# %% [markdown]
# ## The exchange: latency + bandwidth
# The model's own exchange (the expert stage's two all-to-alls, `expert_parallel.exchange`) was timed
# at every E on its own buffer and on 4x and 16x that buffer. Per device it sends
# 2 (m - 1) messages (m = mesh expert size = gcd(E, 8)) and 2 (m - 1)/m of its buffer share;
# `smoe fit` fits t = t0 + a * messages + b * bytes to every round. Left: time against bytes, one colour
# per message count, with the fit; right: time against E at each payload.

# %%
rows, fit_json = results["default"]
groups = [g for g in fit_json["groups"] if g.get("exchange_latency_bandwidth")]
fig, axes = plt.subplots(len(groups), 2, figsize=(13, 4.6 * len(groups)), squeeze=False)
for (left, right), group in zip(axes, groups):
    latency = group["exchange_latency_bandwidth"]
    members = sorted((r for r in rows if r["kind"] == "sectional" and r["d"] == group["setting"]["d"]),
                     key=lambda r: r["E"])
    names = sorted({k.rsplit(".", 1)[0] for k in members[0] if k.startswith("exchange") and k.endswith(".samples_s")},
                   key=lambda n: members[0][f"{n}.bytes_per_device"])
    for messages, color in zip(sorted({r["exchange.messages_per_device"] for r in members}), plt.cm.viridis(np.linspace(0, 0.9, 8))):
        at = [(r[f"{n}.bytes_per_device"], np.median(r[f"{n}.samples_s"])) for r in members for n in names
              if r[f"{n}.messages_per_device"] == messages and r[f"{n}.bytes_per_device"] > 0]
        if not at:
            continue
        x, y = np.array(sorted(at)).T
        left.plot(x, y * 1e3, "o", color=color, label=f"{messages} messages/device")
        left.plot(x, (latency["t0"] + latency["a"] * messages + latency["b"] * x) * 1e3, "-", color=color, linewidth=1)
    ci = latency["ci"]
    left.set(xscale="log", yscale="log", xlabel="bytes sent per device", ylabel="exchange time (ms), median")
    left.set_title(f"{setting_label(group['setting'])}:\na = {latency['a']:.2g} s/message "
                   f"[{ci['a'][0]:.2g}, {ci['a'][1]:.2g}], b = {latency['b']:.2g} s/byte "
                   f"[{ci['b'][0]:.2g}, {ci['b'][1]:.2g}]", fontsize=9)
    left.legend(fontsize=7)
    e = [r["E"] for r in members]
    for n in names:
        right.plot(e, [np.median(r[f"{n}.samples_s"]) * 1e3 for r in members], "o-", label=n)
    right.set(xscale="log", yscale="log", xlabel="E (number of experts)", ylabel="exchange time (ms), median")
    right.set_xticks(e, labels=[str(v) for v in e])
    split = group.get("growth_split")
    if split:
        last = split["rows"][-1]
        right.set_title(f"step growth to E={last['E']} ({split['law']} law): {1e3 * last['step_growth_s']:.0f} ms;\n"
                        f"exchange {1e3 * last['exchange_growth_s']:.1f} ms, expert compute "
                        f"{1e3 * last['expert_compute_growth_s']:.0f} ms: mostly {split['dominant']}", fontsize=9)
    right.legend(fontsize=7)
fig.tight_layout()
figlib.save(fig, "04_exchange_default.png")
plt.show()

for group in groups:
    for row in group["growth_split"]["rows"] if group.get("growth_split") else []:
        print(f"{setting_label(group['setting']):30s} E={row['E']:4d} step growth {1e3 * row['step_growth_s']:8.1f} ms"
              f"  exchange {1e3 * row['exchange_growth_s']:6.2f} ms  expert compute {1e3 * row['expert_compute_growth_s']:7.1f} ms")

# %% [markdown]
# ## Multi-process (committed before pairing)

# %%
plot_source("multiprocess", programs=("train_step", "exchange"))

# %% [markdown]
# ## Measured vs predicted E_opt
# For every fitted group and program: the continuous E_opt of the chosen law with its bootstrap
# interval (bar), the law's best measured E (square), the measured fastest E (cross) and the E that
# cannot be told apart from it at 95% (dots); the verdict is written under each. When the fitted
# E_opt is 0 (nothing shrinks with E enough to pay for the overhead), it sits at the bottom.

# %%
labels, fitted, intervals, predicted, best, tied = [], [], [], [], [], []
for name in SOURCES:
    for group in results[name][1]["groups"]:
        for program in ("train_step",):
            entry = group["fits"][program]
            fit = entry["fit"]
            labels.append(f"{name}\n{setting_label(group['setting'], ('d', 'processes'), chr(10))}\n{verdict_of(entry)}")
            fitted.append(np.nan if fit["e_opt"] is None else fit["e_opt"])
            ci = fit["e_opt_ci"] or [np.nan, np.nan]
            intervals.append([np.nan if v is None else v for v in ci])
            predicted.append(fit.get("predicted_best_e", fit["e_opt_integer"]))
            best.append(entry["measured_best_e"])
            tied.append(fit.get("tied_set") or [])
            print(f"{name:12s} {setting_label(group['setting']):40s} {program:10s} law={fit.get('overhead_law', 'quadratic'):9s} "
                  f"{verdict_of(entry)}")

x = np.arange(len(labels))
intervals = np.array(intervals, dtype=float)
fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(labels)), 5.5))
ax.vlines(x, intervals[:, 0], intervals[:, 1], color="tab:blue", linewidth=6, alpha=0.35,
          label="fitted E_opt, 95% bootstrap interval")
ax.plot(x, fitted, "o", color="tab:blue", label="fitted E_opt (continuous)")
ax.plot(x, predicted, "s", color="tab:green", markerfacecolor="none", markersize=10, label="law's best measured E")
ax.plot(x, best, "x", color="black", markersize=10, mew=2, label="measured fastest E")
for xi, members in zip(x, tied):
    ax.plot([xi] * len(members), members, ".", color="tab:orange", markersize=9,
            label="tied with the fastest (95%)" if xi == 0 else None)
ax.set_xticks(x, labels=labels, fontsize=7)
ax.set_yscale("symlog", base=2, linthresh=1)
ax.set_ylabel("E (number of experts)")
ax.set_title("E_opt: chosen law vs measured fastest E (train step)")
ax.legend(loc="upper right", fontsize=7)
figlib.save(fig, "04_eopt_measured_vs_predicted.png")
plt.show()
