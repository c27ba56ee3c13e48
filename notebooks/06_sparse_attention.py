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
# # 6. Learned sparse attention: how E_opt moves with k/L', and what the small runs measured
#
# With a DeepSeek-V3.2-style lightning indexer each query attends to k selected keys, so the experts'
# attention term of S(E) becomes L' k d0 instead of L'^2 d0 and each expert's indexer adds
# L'^2 H_I d_I (`theory.CostModel(attention_topk=k, indexer_heads=H_I, indexer_dim=d_I)`, theory/README.md).
# Below: E_opt against k/L' (parallel reading, d0 = 4096, L = L', H_I = 4, d_I = 16), then the committed
# results of `experiments/sparse_attention.sh` at L = 512 (experiments/results/sparse_attention) and the
# attention-op timings of `benchmarks/attention_ops.py` (benchmarks/results/attention_ops_cpu.json).
# Nothing is re-run here.

# %%
import json

import matplotlib.pyplot as plt
import numpy as np

import figlib
import theory

D0, INDEXER = 4096, dict(indexer_heads=4, indexer_dim=16)
fractions = np.geomspace(1 / 256, 1, 33)
fig, ax = plt.subplots(figsize=(7, 4.5))
for seq, style in ((2048, "-"), (8192, "--")):
    for alpha in (1e3, 1e6):
        dense = theory.e_opt_numeric(theory.CostModel(d0=D0, seq_len=seq, alpha=alpha))
        e_opt = [theory.e_opt_numeric(theory.CostModel(d0=D0, seq_len=seq, alpha=alpha,
                                                       attention_topk=max(1, int(f * seq)), **INDEXER))
                 for f in fractions]
        ax.plot(fractions, np.asarray(e_opt) / dense, style, color=figlib.ALPHA_COLORS[alpha],
                label=f"L' = {seq}, {figlib.alpha_label(alpha)} (dense E_opt {dense:.0f})")
ax.plot(fractions, fractions ** (1 / 3), ":", color="gray", label="(k/L')^(1/3): attention-dominated closed form")
ax.set(xscale="log", xlabel="k / L'", ylabel="E_opt(k) / E_opt(dense)",
       title=f"E_opt vs k/L', {figlib.READING['parallel']}, d0 = {D0}")
ax.legend()
figlib.save(fig, "06_eopt_vs_k.png")

# %% [markdown]
# ## The small runs (L = 512, d = 64, 2 layers, byte-level Shakespeare)
# Left: final val cross-entropy per arm against k/L (continued from the same dense run; the dense
# control continued for the same steps). Middle: recall of the oracle top-k (head-summed dense
# attention) after the indexer warm-up, for the learned indexer and the fixed patterns with the same k.
# Right: attention-op time relative to dense attention at L = 512, 1024, 2048 with k = L/8 (CPU).

# %%
results = json.loads((figlib.results_root() / "sparse_attention" / "results.json").read_text())
ops = json.loads((figlib.REPO / "benchmarks" / "results" / "attention_ops_cpu.json").read_text())
seq_len, arms = results["seq_len"], results["arms"]
fig, (ax_loss, ax_recall, ax_ops) = plt.subplots(1, 3, figsize=(16, 4.5))
for select, marker in (("indexer", "o"), ("window", "s"), ("random", "D")):
    points = sorted((a["topk"] / seq_len, a["val_ce"]) for a in arms.values()
                    if a.get("select") == select and a["from"] != "scratch")
    ax_loss.plot(*zip(*points), marker=marker, label=f"{select}, continued")
    recall = sorted((r["k_over_l"], r["recall"]) for r in results["recall_after_warmup"].values()
                    if r["select"] == select)
    ax_recall.plot(*zip(*recall), marker=marker, label=f"{select}, after warm-up")
for arm in (a for a in arms.values() if a["from"] == "scratch" and "topk" in a):
    ax_loss.plot(arm["topk"] / seq_len, arm["val_ce"], "k^", label=f"indexer, natively sparse ({arm['step']} steps)")
ax_loss.axhline(arms["control"]["val_ce"], color="gray", ls="--", label="dense control")
ax_loss.set(xscale="log", xlabel="k / L", ylabel="val cross-entropy (nats/byte)", title="val loss vs k/L")
ax_recall.axhline(0.8, color="gray", ls=":", label="target at k/L = 1/8")
ax_recall.set(xscale="log", xlabel="k / L", ylabel="recall", ylim=(0, 1.02), title="recall of the oracle top-k")
for op, marker in (("gather/forward", "o"), ("gather_main/forward", "s"), ("block/forward_backward", "D"),
                   ("gather/forward_backward", "v")):
    lengths = sorted(int(seq) for seq in ops["attention"])
    ax_ops.plot(lengths, [ops["attention"][str(seq)]["ops"][op]["vs_dense"] for seq in lengths],
                marker=marker, label=op)
ax_ops.axhline(1.0, color="gray", ls="--", label="dense")
ax_ops.axhline(0.5, color="gray", ls=":", label="target: 2x below dense")
ax_ops.set(xscale="log", yscale="log", xlabel="L (k = L/8)", ylabel="time / dense attention",
           title="attention op time (CPU)")
for ax in (ax_loss, ax_recall):
    ax.set_xticks([1 / 16, 1 / 8, 1 / 4, 1 / 2], labels=["1/16", "1/8", "1/4", "1/2"])
    ax.minorticks_off()
for ax in (ax_loss, ax_recall, ax_ops):
    ax.legend()
figlib.save(fig, "06_sparse_attention_results.png")
