"""The two figures: iso-FLOP curves (loss vs parameters, a panel per budget) and loss vs E."""

from __future__ import annotations

import math
from pathlib import Path

from smoe import atomic
from smoe.quality.report import Setting, expert_settings, iso_flop_labels

SETTING_NOTE = "byte-level Shakespeare"


def _errorbar(ax, settings: list[Setting], x, label: str, **style) -> None:
    settings = sorted(settings, key=x)
    stds = [s.std("val_bpb") for s in settings]
    ax.errorbar([x(s) for s in settings], [s.mean("val_bpb") for s in settings],
                yerr=[0.0 if math.isnan(e) else e for e in stds], marker="o", capsize=3, label=label, **style)


def _readable_log_ticks(axis) -> None:
    # Labels at 1, 2 and 5 per decade in k/M units: a sweep's sizes often span less than a decade,
    # where matplotlib's default labels every minor tick in overlapping scientific notation.
    from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(EngFormatter())
    axis.set_minor_formatter(NullFormatter())


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def iso_flop_figure(all_settings: list[Setting], path: Path) -> None:
    plt = _pyplot()
    budgets = sorted({s.budget for s in all_settings})
    labels = iso_flop_labels(all_settings)
    seq_len = all_settings[0].runs[0]["seq_len"]
    fig, axes = plt.subplots(1, len(budgets), figsize=(5.5 * len(budgets), 4.3), squeeze=False)
    for ax, budget in zip(axes[0], budgets):
        for label in labels:
            here = [s for s in all_settings if s.budget == budget and s.label == label]
            _errorbar(ax, here, lambda s: s.runs[0]["params_total"], label)
            for s in here:
                ax.annotate(f"d={s.d_model}", (s.runs[0]["params_total"], s.mean("val_bpb")), fontsize=6,
                            textcoords="offset points", xytext=(4, 4))
        seeds = max(len(s.runs) for s in all_settings if s.budget == budget)
        bars = f"error bars: std over {seeds} seeds" if seeds > 1 else "one seed"
        ax.set_xscale("log")
        _readable_log_ticks(ax.xaxis)
        ax.set_xlabel("total parameters, log scale (top-k: all experts, not just active)")
        ax.set_ylabel("final validation loss (bits per byte)")
        ax.set_title(f"iso-FLOP: {budget:.2g} training FLOPs\n{SETTING_NOTE}, T={seq_len}; {bars}", fontsize=9)
        ax.legend(fontsize=8)
    _save(fig, path)


def loss_vs_e_figure(all_settings: list[Setting], path: Path) -> None:
    """A panel per (budget, d_model) slice with >= 3 expert counts, a line per shortening factor."""
    plt = _pyplot()
    chosen = expert_settings(all_settings)
    slices = sorted({(s.budget, s.d_model) for s in chosen})
    fig, axes = plt.subplots(1, max(1, len(slices)), figsize=(5.5 * max(1, len(slices)), 4.3), squeeze=False)
    for ax, (budget, d_model) in zip(axes[0], slices):
        here = [s for s in chosen if (s.budget, s.d_model) == (budget, d_model)]
        for shorten in sorted({s.shorten for s in here}):
            name = "no shortening (r=1)" if shorten == 1 else f"sequence shortened r={shorten}"
            _errorbar(ax, [s for s in here if s.shorten == shorten], lambda s: s.n_experts, f"sectional, {name}")
        dense = [s for s in all_settings if s.family == "dense" and (s.budget, s.d_model) == (budget, d_model)]
        if dense:
            ax.axhline(dense[0].mean("val_bpb"), color="grey", linestyle="--", label=f"dense d={d_model}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("experts E (each on a d/E slice)")
        ax.set_ylabel("final validation loss (bits per byte)")
        ax.set_title(f"sectional MoE loss vs E: d={d_model}, {budget:.2g} training FLOPs\n{SETTING_NOTE}; "
                     "error bars: std over seeds where repeated", fontsize=9)
        ax.legend(fontsize=8)
    if not slices:
        axes[0][0].set_axis_off()
        axes[0][0].set_title("no (budget, d) slice with >= 3 expert counts in this sweep")
    _save(fig, path)
