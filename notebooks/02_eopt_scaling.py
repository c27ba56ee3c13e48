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
# # 2. How E_opt scales with d0, L, L' and alpha
#
# The paper's model (no FFN), E_opt from the numeric minimiser of S(E) (solid) against the closed
# forms that hold when one shrinking term dominates (`theory/README.md`, "E_opt"):
# * parallel time, QKV-dominated: E_opt = (3 L' d0^2 / alpha)^(1/4) (dashed);
# * parallel time, attention-dominated: E_opt = (L'^2 d0 / (2 alpha))^(1/3) (dotted);
# * total work: E_opt = (3 L' d0^2 / (2 alpha))^(1/3), exact because the expert attention work is then constant in E.
#
# Unless a panel varies it: d0 = 4096, L' = 2048, L = 2 L'.

# %%
import matplotlib.pyplot as plt
import numpy as np

import figlib
import theory


def e_opts(regime: str, d0: int, l_reduced: int, alpha: float, seq_len: int | None = None) -> dict[str, float]:
    model = theory.CostModel(d0=int(d0), seq_len=int(seq_len or 2 * l_reduced), seq_reduced=int(l_reduced),
                             alpha=float(alpha), regime=regime)
    out = {"numeric": theory.e_opt_numeric(model), "qkv": theory.e_opt_closed_form(model, "qkv")}
    if regime == "parallel":
        out["attention"] = theory.e_opt_closed_form(model, "attention")
    return out


STYLES = {"numeric": ("-", "numeric minimiser"), "qkv": ("--", "closed form, QKV-dominated"),
          "attention": (":", "closed form, attention-dominated")}


def sweep_panel(ax, regime: str, xs, kwargs_of, xlabel: str) -> None:
    """One panel: E_opt against xs for each alpha; kwargs_of(x) gives the varied e_opts arguments."""
    for alpha in figlib.ALPHAS:
        curves = [e_opts(regime, alpha=alpha, **kwargs_of(x)) for x in xs]
        for key, (style, _) in STYLES.items():
            if key in curves[0]:
                ax.loglog(xs, [c[key] for c in curves], linestyle=style, color=figlib.ALPHA_COLORS[alpha],
                          linewidth=2.0 if key == "numeric" else 1.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("E_opt (experts)")


def legend_handles(regime: str) -> list:
    keys = [k for k in STYLES if regime == "parallel" or k != "attention"]
    lines = [plt.Line2D([], [], color="black", linestyle=STYLES[k][0], label=STYLES[k][1]) for k in keys]
    if regime == "work":
        lines[-1].set_label("closed form (exact in this reading)")
    return lines + [plt.Line2D([], [], color=figlib.ALPHA_COLORS[a], label=figlib.alpha_label(a)) for a in figlib.ALPHAS]


# %% [markdown]
# ## Four panels per reading
# "vs L" keeps L' = L/2 tied to L; "vs L' (L fixed)" shortens the expert sequence under a fixed
# L = 16384. L alone only moves the E-independent pre-expert block, so it leaves E_opt unchanged:
# everything L does to E_opt it does through L'.

# %%
d0s = np.geomspace(256, 65536, 25)
lengths = np.geomspace(256, 32768, 25)
alphas = np.geomspace(1e2, 1e10, 40)
for regime in ("parallel", "work"):
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.8))
    sweep_panel(axes[0], regime, d0s, lambda x: {"d0": x, "l_reduced": figlib.L_REDUCED_REF},
                "d0 (embedding width)")
    axes[0].set_title(f"vs d0 (L' = {figlib.L_REDUCED_REF})")
    sweep_panel(axes[1], regime, lengths, lambda x: {"d0": figlib.D0_REF, "l_reduced": x / 2, "seq_len": x},
                "L (tokens), with L' = L/2")
    axes[1].set_title(f"vs L (d0 = {figlib.D0_REF})")
    sweep_panel(axes[2], regime, lengths[lengths <= 16384],
                lambda x: {"d0": figlib.D0_REF, "l_reduced": x, "seq_len": 16384}, "L' (tokens), L = 16384")
    axes[2].set_title(f"vs L' at fixed L (d0 = {figlib.D0_REF})")
    for d0, width in zip(figlib.D0_VALUES, (1.0, 2.0, 3.0)):
        for key, (style, _) in STYLES.items():
            curve = [e_opts(regime, d0, figlib.L_REDUCED_REF, a).get(key) for a in alphas]
            if curve[0] is not None:
                axes[3].loglog(alphas, curve, linestyle=style, color="black", linewidth=width)
        axes[3].annotate(f"d0={d0}", (alphas[-1], e_opts(regime, d0, figlib.L_REDUCED_REF, alphas[-1])["numeric"]),
                         fontsize=8, xytext=(-2, 8 * width), textcoords="offset points", ha="right")
    axes[3].set_xlabel("alpha (MACs per E^2)")
    axes[3].set_ylabel("E_opt (experts)")
    axes[3].set_title(f"vs alpha (L' = {figlib.L_REDUCED_REF}; line width = d0)")
    fig.legend(handles=legend_handles(regime), loc="lower center", ncol=6, bbox_to_anchor=(0.5, -0.08))
    fig.suptitle(f"E_opt scaling, {figlib.READING[regime]}: numeric vs closed form", y=1.02)
    fig.tight_layout()
    figlib.save(fig, f"02_eopt_scaling_{regime}.png")
    plt.show()

# %% [markdown]
# ## How far off each closed form is (parallel time)
# Ratio closed form / numeric over alpha, for the three widths and three L'. The QKV form is the
# better one when alpha is large (few experts, QKV per expert large against attention); the attention
# form takes over once E is large enough that L'^2 d0 / E beats 3 L' d0^2 / E^2, i.e. E > 3 d0 / L'.

# %%
fig, axes = plt.subplots(1, len(figlib.L_REDUCED_VALUES), figsize=(16, 4.5), sharey=True)
for ax, l_red in zip(axes, figlib.L_REDUCED_VALUES):
    for d0, color in zip(figlib.D0_VALUES, ("tab:blue", "tab:green", "tab:red")):
        curves = [e_opts("parallel", d0, l_red, a) for a in alphas]
        for key in ("qkv", "attention"):
            ratio = [c[key] / c["numeric"] for c in curves]
            ax.semilogx(alphas, ratio, linestyle=STYLES[key][0], color=color,
                        label=f"d0={d0}, {STYLES[key][1]}")
    ax.axhline(1.0, color="grey", linewidth=1)
    ax.set_xlabel("alpha (MACs per E^2)")
    ax.set_title(f"L' = {l_red}, L = {2 * l_red}")
axes[0].set_ylabel("E_opt closed form / E_opt numeric")
axes[0].legend(loc="lower left", ncol=1)
fig.suptitle("Closed forms against the numeric minimiser, parallel time (paper's model, no FFN)")
figlib.save(fig, "02_closed_form_ratio.png")
plt.show()

# %%
print("parallel time, L' = 2048, d0 = 4096 (the paper README's check):")
for alpha in figlib.ALPHAS:
    values = e_opts("parallel", figlib.D0_REF, figlib.L_REDUCED_REF, alpha)
    print(f"  alpha={alpha:.0e}  " + "  ".join(f"{k}={v:7.2f}" for k, v in values.items()))
