"""The fit figure, one row per setting: per program (train step, exchange, expert compute) the
measured seconds vs E (paired: drift-normalised) with error bars, the chosen law's S(E) and its
parts, the other laws' curves, E_opt and the verdict; then the exchange against bytes per device
with the latency + bandwidth fit, and which part the step's growth comes from."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from smoe.fit.sweep import FITTED_PROGRAMS, median_band
from theory.overhead_laws import law_value

PART_LABELS = {"const": "E-independent", "inv_e": "c/E", "inv_e2": "c/E^2", "alpha": "alpha*E^2",
               "beta": "beta*(E-1)", "gamma": "gamma*E^p"}


def _panel(ax, entry: dict, title: str) -> None:
    measured = entry["measured"]
    e = np.array([m["E"] for m in measured], dtype=float)
    bands = np.array([median_band(m["samples_s"]) for m in measured]) * 1e3
    ax.errorbar(e, bands[:, 1], yerr=[bands[:, 1] - bands[:, 0], bands[:, 2] - bands[:, 1]], fmt="o", color="black",
                capsize=3, label="measured (median, IQR)")
    fit = entry["fit"]
    grid = np.geomspace(e.min() / 1.5, e.max() * 1.5, 200)
    coefficients = fit["coefficients"]
    for name, coefficient in coefficients.items():
        if name != "p" and coefficient > 0:
            part = law_value({name: coefficient, "p": coefficients.get("p")}, grid) * 1e3
            ax.plot(grid, part, "--", linewidth=1, label=PART_LABELS[name])
    for name, law in fit["laws"].items():
        if name != fit["overhead_law"]:
            ax.plot(grid, law_value(law["coefficients"], grid) * 1e3, color="grey", linewidth=0.8, alpha=0.6)
    ax.plot(grid, law_value(coefficients, grid) * 1e3, color="tab:red", linewidth=2,
            label=f"chosen law: {fit['overhead_law']} (grey: the others)")
    # An E_opt outside the measured range (e.g. 0 when nothing falls with E) is stated in the title.
    inside = fit["e_opt"] is not None and grid[0] <= fit["e_opt"] <= grid[-1]
    if inside:
        ax.axvline(fit["e_opt"], color="tab:red", linestyle=":", label=f"E_opt = {fit['e_opt']:.3g}")
        if fit["e_opt_ci"] and None not in fit["e_opt_ci"]:
            ax.axvspan(max(fit["e_opt_ci"][0], grid[0]), min(fit["e_opt_ci"][1], grid[-1]), color="tab:red",
                       alpha=0.12, label="E_opt 95% interval")
    else:
        title += f"\nfitted E_opt = {fit['e_opt']} (outside the measured E)"
    ax.set_xscale("log", base=2)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("experts E")
    ax.set_ylabel(f"{entry['program']} time (ms)")
    ax.set_title(f"{title}\nlaw: {fit['overhead_law']}, best measured E by the law {fit['predicted_best_e']}, "
                 f"measured fastest {entry['measured_best_e']} (tied {fit['tied_set']}): {entry['verdict']}", fontsize=8)
    ax.legend(fontsize=7)


def _exchange_panel(ax, group: dict) -> None:
    latency = group["exchange_latency_bandwidth"]
    settings = latency["settings"]
    messages = sorted({s["messages_per_device"] for s in settings})
    colors = dict(zip(messages, ("tab:grey", "tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")))
    for m in messages:
        pts = sorted((s for s in settings if s["messages_per_device"] == m), key=lambda s: s["bytes_per_device"])
        x = np.array([max(s["bytes_per_device"], 1.0) for s in pts])
        ax.plot(x, [1e3 * s["median_s"] for s in pts], "o", color=colors.get(m, "black"),
                label=f"{m:g} messages/device")
        grid = np.geomspace(x.min(), x.max() * 1.2, 50) if x.max() > x.min() else x
        ax.plot(grid, 1e3 * (latency["t0"] + latency["a"] * m + latency["b"] * grid), "-", linewidth=1,
                color=colors.get(m, "black"))
    ci = latency["ci"] or {}
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("bytes sent per device (0 plotted at 1)")
    ax.set_ylabel("exchange time (ms), median")
    title = (f"exchange = t0 + a*messages + b*bytes: a = {latency['a']:.2g} s/message {_ci(ci.get('a'))}, "
             f"b = {latency['b']:.2g} s/byte {_ci(ci.get('b'))}")
    split = group.get("growth_split")
    if split:
        last = split["rows"][-1]
        title += (f"\nstep growth E={split['rows'][0]['E']}->{last['E']} ({split['law']} law): "
                  f"{1e3 * last['step_growth_s']:.0f} ms; exchange {1e3 * last['exchange_growth_s']:.1f} ms, "
                  f"expert compute {1e3 * last['expert_compute_growth_s']:.1f} ms: mostly {split['dominant']}")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)


def _ci(ci) -> str:
    return "" if not ci else f"[{ci[0]:.2g}, {ci[1]:.2g}]"


def write_figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = result["groups"]
    programs = [p for p in FITTED_PROGRAMS if any(p in g["fits"] for g in groups)]
    with_exchange = any(g.get("exchange_latency_bandwidth") for g in groups)
    columns = len(programs) + with_exchange
    fig, axes = plt.subplots(len(groups), columns, figsize=(6 * columns, 4.6 * len(groups)), squeeze=False)
    for row, group in enumerate(groups):
        setting = ", ".join(f"{k}={v}" for k, v in group["setting"].items()
                            if k in ("d", "L", "r", "batch", "devices", "processes", "n_layers"))
        drift = "" if group.get("drift_cv") is None else f", paired, dense drift CV {100 * group['drift_cv']:.1f}%"
        for col, program in enumerate(programs):
            if program in group["fits"]:
                _panel(axes[row][col], group["fits"][program],
                       f"{program}: {setting} ({result['regime']} fit{drift})")
            else:
                axes[row][col].set_visible(False)
        if with_exchange:
            if group.get("exchange_latency_bandwidth"):
                _exchange_panel(axes[row][-1], group)
            else:
                axes[row][-1].set_visible(False)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
