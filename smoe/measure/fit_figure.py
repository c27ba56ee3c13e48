"""The fit figure: measured seconds vs E with error bars, the fitted S(E) and its parts, E_opt."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from smoe.measure.fit_sweep import median_band
from theory.cost_fit import COEFFICIENT_NAMES

POWER_OF = {name: power for power, name in COEFFICIENT_NAMES.items()}
PART_LABELS = {"const": "E-independent", "inv_e": "c/E", "inv_e2": "c/E^2", "linear": "c*E", "alpha": "alpha*E^2"}


def _panel(ax, entry: dict, title: str) -> None:
    measured = entry["measured"]
    e = np.array([m["E"] for m in measured], dtype=float)
    bands = np.array([median_band(m["samples_s"]) for m in measured]) * 1e3
    ax.errorbar(e, bands[:, 1], yerr=[bands[:, 1] - bands[:, 0], bands[:, 2] - bands[:, 1]], fmt="o", color="black",
                capsize=3, label="measured (median, IQR)")
    fit = entry["fit"]
    grid = np.geomspace(e.min() / 1.5, e.max() * 1.5, 200)
    total = np.zeros_like(grid)
    for name, coefficient in fit["coefficients"].items():
        part = coefficient * grid ** POWER_OF[name] * 1e3
        total += part
        if coefficient > 0:
            ax.plot(grid, part, "--", linewidth=1, label=PART_LABELS[name])
    ax.plot(grid, total, color="tab:red", linewidth=2, label="fitted S(E)")
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
    ax.set_title(title, fontsize=9)
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
