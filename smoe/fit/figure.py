"""The fit figure: measured seconds vs E with error bars, the chosen law's S(E) and its parts, the
other laws' curves, E_opt."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from smoe.fit.sweep import median_band
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
    ax.set_title(f"{title}\nverdict: {entry['verdict']}", fontsize=9)
    ax.legend(fontsize=7)


def write_figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = result["groups"]
    programs = sorted({p for g in groups for p in g["fits"]})
    fig, axes = plt.subplots(len(groups), len(programs), figsize=(6 * len(programs), 4.2 * len(groups)),
                             squeeze=False)
    for row, group in enumerate(groups):
        setting = ", ".join(f"{k}={v}" for k, v in group["setting"].items()
                            if k in ("d", "L", "r", "batch", "devices", "processes", "n_layers"))
        for col, program in enumerate(programs):
            if program in group["fits"]:
                _panel(axes[row][col], group["fits"][program], f"{program}: {setting} ({result['regime']} fit)")
            else:
                axes[row][col].set_visible(False)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
