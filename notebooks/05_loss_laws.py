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
# # 5. Loss-law fit on the Chinchilla reference data
#
# L(N, D) = E + A / N^alpha + B / D^beta, fitted as Hoffmann et al. 2022 (Huber loss on log-residuals,
# L-BFGS from the best grid starts) to the 240 training runs of their Figure 4, as extracted by
# Besiroglu et al. 2024. The CSV ships inside the package with its provenance
# (`theory/data/chinchilla_svg_extracted.csv`, `theory/data/README.md`); `load_chinchilla_reference()`
# sets D = C / (6 N) and drops the 5 highest-loss runs, as Besiroglu et al. do.
# Intervals: 95% percentile bootstrap over resampled runs.

# %%
import matplotlib.pyplot as plt
import numpy as np

import figlib
import theory

data = theory.load_chinchilla_reference()
fit = theory.fit_chinchilla(data["N"], data["D"], data["loss"], bootstrap=100, seed=0)
# Besiroglu et al.'s refit (theory/data/README.md): A and B are loosely constrained, so only E, alpha, beta are compared.
REFERENCE = {"E": 1.82, "alpha": 0.35, "beta": 0.37}
for name, value in fit.params.items():
    lo, hi = fit.ci[name]
    ref = f"   Besiroglu et al. {REFERENCE[name]}" if name in REFERENCE else ""
    print(f"{name:6s} {value:10.4g}  95% CI [{lo:.4g}, {hi:.4g}]{ref}")


def predict(n_params, tokens) -> np.ndarray:
    p = fit.params
    return p["E"] + p["A"] / np.asarray(n_params) ** p["alpha"] + p["B"] / np.asarray(tokens) ** p["beta"]


# %% [markdown]
# ## Loss against model size, with the fitted law along iso-compute lines
# Each curve holds the training compute C = 6 N D fixed at a compute level of the data set; colour is C.

# %%
compute = 6.0 * data["N"] * data["D"]
fig, (ax, ax_parity) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1.6, 1]})
norm = plt.matplotlib.colors.LogNorm(compute.min(), compute.max())
points = ax.scatter(data["N"], data["loss"], c=compute, norm=norm, cmap="viridis", s=14, label="training runs")
n_grid = np.geomspace(data["N"].min() / 1.5, data["N"].max() * 1.5, 200)
for level in np.geomspace(compute.min(), compute.max(), 7):
    ax.plot(n_grid, predict(n_grid, level / (6.0 * n_grid)), color=plt.cm.viridis(norm(level)), linewidth=1.2)
ax.plot([], [], color="grey", label="fitted law at fixed C")
ax.set_xscale("log")
ax.set_ylim(data["loss"].min() - 0.1, np.percentile(data["loss"], 99) + 0.2)
ax.set_xlabel("N (parameters)")
ax.set_ylabel("final training loss (nats/token)")
ax.legend(loc="upper right")
fig.colorbar(points, ax=ax, label="training compute C = 6ND (FLOPs)")
p = fit.params
ax.set_title(f"Chinchilla fit: E={p['E']:.3f}, A={p['A']:.0f}, B={p['B']:.0f}, "
             f"alpha={p['alpha']:.3f}, beta={p['beta']:.3f}")

predicted = predict(data["N"], data["D"])
ax_parity.scatter(data["loss"], predicted, c=compute, norm=norm, cmap="viridis", s=12, label="training runs")
span = [data["loss"].min(), data["loss"].max()]
ax_parity.plot(span, span, color="black", linewidth=1, label="y = x")
ax_parity.set_xlabel("measured loss (nats/token)")
ax_parity.set_ylabel("fitted loss (nats/token)")
rel = np.median(np.abs(np.log(predicted / data["loss"])))
ax_parity.set_title(f"Parity ({fit.n_points} runs; median |log ratio| = {rel:.4f})")
ax_parity.legend(loc="upper left")
fig.suptitle("Loss law L(N, D) = E + A/N^alpha + B/D^beta on Hoffmann et al. (2022) Fig. 4 data (Besiroglu et al. extraction)")
fig.tight_layout()
figlib.save(fig, "05_chinchilla_fit.png")
plt.show()

# %% [markdown]
# ## Bootstrap intervals against the published refit
# Each parameter relative to its full-data estimate; bars are the 95% bootstrap intervals, crosses
# are Besiroglu et al.'s values where they are stated precisely.

# %%
names = list(fit.params)
fig, ax = plt.subplots(figsize=(8, 4.5))
for i, name in enumerate(names):
    value = fit.params[name]
    lo, hi = fit.ci[name]
    ax.errorbar(i, 1.0, yerr=[[1 - lo / value], [hi / value - 1]], fmt="o", color="tab:blue", capsize=5,
                label="full-data fit, 95% bootstrap interval" if i == 0 else None)
    if name in REFERENCE:
        ax.plot(i, REFERENCE[name] / value, "x", color="tab:red", markersize=10, mew=2,
                label="Besiroglu et al. 2024" if name == "E" else None)
ax.set_xticks(range(len(names)), labels=[f"{n}\n= {fit.params[n]:.4g}" for n in names])
ax.set_yscale("log")
ax.set_ylabel("parameter / full-data estimate (ratio)")
ax.set_title(f"Chinchilla law: bootstrap intervals (100 resamples of {fit.n_points} runs)")
ax.legend(loc="upper left")
figlib.save(fig, "05_bootstrap_intervals.png")
plt.show()
