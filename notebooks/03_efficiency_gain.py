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
# # 3. Efficiency gain of sectional over traditional MoE
#
# **Definition.** The traditional layer is the dense full-width layer on L tokens that the sectional
# layer replaces, S_trad = 3 L d0^2 + L^2 d0 MACs (`CostModel.traditional()`, the paper's A_trad plus
# its attention scores). The gain at E experts is
#
#     gain(E) = S_trad / S(E),
#
# drawn **with** the overhead alpha E^2 (coloured, one line per alpha) and **without** it (black: the
# gain the paper's QKV and attention savings alone would give). A gain above 1 means the sectional
# layer is cheaper. Both readings, parallel time and total work, are shown.
#
# Two accountings of S(E):
# * **expert stage only** (`include_pre=False`): the E experts on L' tokens replace the traditional
#   layer; this is the saving the paper's reduction factors describe;
# * **with the pre-expert block** (`include_pre=True`): the full-width block before the split is
#   itself a traditional layer, so the whole sectional layer can never beat S_trad (gain <= 1).
#
# Setting: the paper's model (no FFN), d0 = 4096, L = 4096, L' = 2048.

# %%
import matplotlib.pyplot as plt
import numpy as np

import figlib
import theory

experts = figlib.log_experts(1, 4096)


def model(regime: str, alpha: float, include_pre: bool) -> theory.CostModel:
    return theory.CostModel(d0=figlib.D0_REF, seq_len=figlib.L_REF, seq_reduced=figlib.L_REDUCED_REF,
                            alpha=alpha, regime=regime, include_pre=include_pre)


# %%
fig, axes = plt.subplots(2, 2, figsize=(13, 9), sharex=True)
peaks = []
for row, include_pre in enumerate((False, True)):
    for col, regime in enumerate(("parallel", "work")):
        ax = axes[row, col]
        # The overhead is the only alpha-dependent term, so any alpha gives the overhead-free curve.
        base = model(regime, 1.0, include_pre)
        no_overhead = base.total(experts) - base.terms(experts)["overhead"]
        ax.loglog(experts, base.traditional() / no_overhead, color="black", linewidth=2, label="without overhead")
        for alpha in figlib.ALPHAS:
            m = model(regime, alpha, include_pre)
            gain = m.traditional() / m.total(experts)
            ax.loglog(experts, gain, color=figlib.ALPHA_COLORS[alpha], label=f"with overhead, {figlib.alpha_label(alpha)}")
            e_opt = theory.e_opt_numeric(m)
            best = m.traditional() / m.total(e_opt)
            figlib.mark_e_opt(ax, e_opt, best, color=figlib.ALPHA_COLORS[alpha])
            peaks.append((include_pre, regime, alpha, e_opt, best))
        ax.axhline(1.0, color="grey", linewidth=1)
        ax.set_ylim(1e-3, None)
        stage = "whole layer (pre-expert block counted)" if include_pre else "expert stage only"
        ax.set_title(f"{figlib.READING[regime]}\n{stage}")
        ax.set_ylabel("gain S_trad / S(E) (MACs / MACs)")
        if row == 1:
            ax.set_xlabel("E (number of experts)")
axes[0, 0].legend(loc="lower left")
fig.suptitle(f"Efficiency gain of sectional over traditional: d0 = {figlib.D0_REF}, L = {figlib.L_REF}, "
             f"L' = {figlib.L_REDUCED_REF} (stars: E_opt = largest gain)")
fig.tight_layout()
figlib.save(fig, "03_gain_model.png")
plt.show()

for include_pre, regime, alpha, e_opt, best in peaks:
    print(f"pre={include_pre!s:5s} {regime:8s} alpha={alpha:.0e}: best gain {best:8.3f} at E_opt = {e_opt:.1f}")

# %% [markdown]
# ## Measured: step time and FLOPs of the sectional model against a dense baseline
# From the committed default sweep (`experiments/results/default/measurements.csv`; 8 emulated CPU
# devices), where each sectional point was timed side by side with a dense model of the same width
# and depth. Gain in time = 1 / `ratio.step_time_over_dense`; gain in FLOPs = 1 /
# `ratio.flops_over_dense` (analytic train-step FLOPs). Emulated devices share the same CPU cores, so
# the measured time follows total work, not parallel time.

# %%
rows = [r for r in figlib.read_measurements(figlib.results_root() / "default" / "measurements.csv")
        if r["kind"] == "sectional"]
widths = sorted({r["d"] for r in rows})
fig, ax = plt.subplots(figsize=(8, 5))
for d, color in zip(widths, ("tab:blue", "tab:red", "tab:green", "tab:purple")):
    pts = sorted((r for r in rows if r["d"] == d), key=lambda r: r["E"])
    e = [r["E"] for r in pts]
    ax.plot(e, [1 / r["ratio.step_time_over_dense"] for r in pts], "o-", color=color,
            label=f"d = {d}: measured train-step time (dense / sectional)")
    ax.plot(e, [1 / r["ratio.flops_over_dense"] for r in pts], "s--", color=color, alpha=0.7,
            label=f"d = {d}: analytic FLOPs (dense / sectional)")
ax.axhline(1.0, color="grey", linewidth=1)
ax.set_xscale("log", base=2)
ax.set_xticks(sorted({r["E"] for r in rows}), labels=[str(e) for e in sorted({r["E"] for r in rows})])
ax.set_xlabel("E (number of experts)")
ax.set_ylabel("gain over dense baseline (ratio, >1 = sectional cheaper)")
first = rows[0]
ax.set_title(f"Measured gain, total-work reading (8 emulated CPU devices): L = {first['L']}, "
             f"batch = {first['batch']}, {first['n_layers']} layers")
ax.legend(loc="lower left")
figlib.save(fig, "03_gain_measured.png")
plt.show()

for r in sorted(rows, key=lambda r: (r["d"], r["E"])):
    print(f"d={r['d']:4d} E={r['E']:3d}  time gain {1 / r['ratio.step_time_over_dense']:.2f}  "
          f"FLOP gain {1 / r['ratio.flops_over_dense']:.2f}")
