"""Shared settings, plotting and results-loading helpers for the notebooks in this folder.

The notebooks import this module from their own folder (the kernel's working directory), so it
stays a plain module next to them rather than part of the installed `smoe` package.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: nbclient runs have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parent
REPO = NOTEBOOKS.parent

# Representative settings for the paper's curves: its own figures and parameter values are not
# available offline, so these span the sizes the text talks about (see notebooks/README.md).
D0_VALUES = (1024, 4096, 16384)
L_REDUCED_VALUES = (512, 2048, 8192)
ALPHAS = (1e3, 1e6, 1e9)
# The paper README's sanity check setting (E_opt ~ 209 / 24 / 3): L' = 2048 after a pre-expert
# block on L = 4096 tokens, i.e. the pre-expert layer halves the sequence. We keep L = 2 L' throughout.
D0_REF, L_REF, L_REDUCED_REF, ALPHA_REF = 4096, 4096, 2048, 1e6

READING = {
    "parallel": "parallel time (one expert per device group)",
    "work": "total work (MACs summed over experts)",
}

TERM_STYLE = {
    "qkv_pre": ("QKV, pre-expert block", "tab:blue", ":"),
    "attention_pre": ("attention scores, pre-expert block", "tab:orange", ":"),
    "ffn_pre": ("FFN, pre-expert block", "tab:green", ":"),
    "qkv_experts": ("QKV, experts", "tab:blue", "-"),
    "attention_experts": ("attention scores, experts", "tab:orange", "-"),
    "ffn_experts": ("FFN, experts", "tab:green", "-"),
    "overhead": (r"overhead $\alpha E^2$", "tab:red", "-"),
}

ALPHA_COLORS = dict(zip(ALPHAS, ("tab:blue", "tab:purple", "tab:red")))

plt.rcParams.update({
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "axes.titlesize": 10,
})


def figures_dir() -> Path:
    """Where PNGs go: notebooks/figures, unless SMOE_FIGURES_DIR redirects it (the test does)."""
    path = Path(os.environ.get("SMOE_FIGURES_DIR", NOTEBOOKS / "figures"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(fig, name: str) -> Path:
    path = figures_dir() / name
    fig.savefig(path, bbox_inches="tight")
    print(f"wrote {path}")
    return path


def alpha_label(alpha: float) -> str:
    return rf"$\alpha = 10^{{{int(round(np.log10(alpha)))}}}$ MACs"


def mark_e_opt(ax, e_opt: float, cost: float, color: str = "black", label: str | None = None) -> None:
    ax.plot([e_opt], [cost], marker="*", markersize=13, color=color, markeredgecolor="black", zorder=5,
            linestyle="none", label=label)
    ax.axvline(e_opt, color=color, linewidth=0.8, linestyle="--", alpha=0.6)


def log_experts(lo: float = 1.0, hi: float = 4096.0, n: int = 400) -> np.ndarray:
    return np.geomspace(lo, hi, n)


# --- measured results (notebooks 3 and 4) ---------------------------------------------------------

def results_root() -> Path:
    """The committed `smoe sweep` + `smoe fit` outputs; SMOE_RESULTS_ROOT points elsewhere (re-measuring)."""
    return Path(os.environ.get("SMOE_RESULTS_ROOT", REPO / "experiments" / "results"))


def _parse(value: str):
    if value == "":
        return None
    if value.startswith("["):
        return json.loads(value)
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


def read_measurements(path: Path) -> list[dict]:
    """measurements.csv as dicts with numbers parsed and the *.samples_s JSON lists decoded."""
    with open(path, newline="") as handle:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def read_fit(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def series(coefficients: dict[str, float], experts) -> np.ndarray:
    """seconds(E) from `smoe fit` coefficients, whichever overhead law they belong to."""
    from theory.overhead_laws import law_value

    return law_value(coefficients, experts)


def quartiles(samples) -> tuple[float, float, float]:
    q25, q50, q75 = np.percentile(samples, [25, 50, 75])
    return float(q25), float(q50), float(q75)
