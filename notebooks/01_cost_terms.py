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
# # 1. S(E) and its parts
#
# The sectional layer of arXiv 2503.20750 as reconstructed in `theory/README.md`: a full-width
# pre-expert block on L tokens, then E experts, each on a d0/E slice of L' tokens, plus the
# quadratic exchange overhead alpha E^2. Costs are multiply-accumulates (MACs).
#
# Two readings of the same layer (the paper does not say which it uses):
# * **parallel time**: one expert per device group, so the cost is one expert's MACs;
# * **total work**: MACs summed over all experts.
#
# The paper's cost model has no FFN term; here the FFN (hidden width 4x the input width) is drawn as
# its own part so its weight against QKV and attention is visible. E_opt (the star) is the numeric
# minimiser of the plotted total.

# %%
import matplotlib.pyplot as plt
import numpy as np

import figlib
import theory
from theory.eopt import best_integer, nearest_integers

FFN_MULT = 4
experts = figlib.log_experts()


def plot_terms(ax, model: theory.CostModel) -> float:
    for name, values in model.terms(experts).items():
        label, color, style = figlib.TERM_STYLE[name]
        ax.loglog(experts, np.broadcast_to(values, experts.shape), color=color, linestyle=style, label=label)
    ax.loglog(experts, model.total(experts), color="black", linewidth=2.2, label="S(E), total")
    e_opt = theory.e_opt_numeric(model)
    figlib.mark_e_opt(ax, e_opt, model.total(e_opt), label="E_opt (numeric minimiser)")
    ax.set_ylim(model.total(experts).min() * 1e-4, model.total(experts).max() * 3)
    ax.set_xlabel("E (number of experts)")
    ax.set_ylabel("cost (MACs)")
    return e_opt


# %% [markdown]
# ## Every term, three model widths, both readings
# L' = 2048 (L = 4096), alpha = 1e6 MACs, FFN multiple 4. Dotted terms belong to the pre-expert block
# and do not depend on E.

# %%
for regime in ("parallel", "work"):
    fig, axes = plt.subplots(1, 3, figsize=(16, 5), sharey=False)
    for ax, d0 in zip(axes, figlib.D0_VALUES):
        model = theory.CostModel(d0=d0, seq_len=figlib.L_REF, seq_reduced=figlib.L_REDUCED_REF,
                                 alpha=figlib.ALPHA_REF, regime=regime, ffn_mult=FFN_MULT)
        e_opt = plot_terms(ax, model)
        ax.set_title(f"d0 = {d0}: E_opt = {e_opt:.1f}")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=5, bbox_to_anchor=(0.5, -0.1))
    fig.suptitle(f"S(E) and its parts, {figlib.READING[regime]}: L = {figlib.L_REF}, "
                 f"L' = {figlib.L_REDUCED_REF}, alpha = 1e6 MACs, FFN x{FFN_MULT}")
    figlib.save(fig, f"01_cost_terms_{regime}.png")
    plt.show()

# %% [markdown]
# ## The paper's model (no FFN) across alpha: the sanity-check setting
# d0 = 4096, L' = 2048. Under the parallel reading the best integers are 209 / 24 / 3 for alpha =
# 1e3 / 1e6 / 1e9, the values in the paper README's check; the total-work reading gives larger E_opt.
# The pre-expert block is a constant ~2.7e11 MACs that would flatten every curve, so the plot shows
# the E-dependent part, S(E) minus that block (the same E_opt).

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
rows = []
for ax, regime in zip(axes, ("parallel", "work")):
    for alpha in figlib.ALPHAS:
        model = theory.CostModel(d0=figlib.D0_REF, seq_len=figlib.L_REF, seq_reduced=figlib.L_REDUCED_REF,
                                 alpha=alpha, regime=regime)
        pre = sum(v for k, v in model.terms(1.0).items() if k.endswith("_pre"))
        color = figlib.ALPHA_COLORS[alpha]
        ax.loglog(experts, model.total(experts) - pre, color=color, label=figlib.alpha_label(alpha))
        e_opt = theory.e_opt_numeric(model)
        e_int = best_integer(model.power_coefficients(), nearest_integers(e_opt))
        figlib.mark_e_opt(ax, e_opt, model.total(e_opt) - pre, color=color,
                          label=f"E_opt = {e_opt:.1f} (best integer {e_int})")
        rows.append((regime, alpha, e_opt, e_int))
    ax.set_xlabel("E (number of experts)")
    ax.set_title(f"{figlib.READING[regime]}")
    ax.legend(loc="upper center", ncol=2)
axes[0].set_ylabel("S(E) minus pre-expert block (MACs)")
fig.suptitle(f"Paper's cost model (no FFN): d0 = {figlib.D0_REF}, L = {figlib.L_REF}, L' = {figlib.L_REDUCED_REF}")
figlib.save(fig, "01_total_vs_alpha.png")
plt.show()

for regime, alpha, e_opt, e_int in rows:
    print(f"{regime:8s} alpha={alpha:.0e}  E_opt={e_opt:8.2f}  best integer={e_int}")
