"""The routing figure of one run, from its metrics.jsonl: where tokens went and how many experts they took.

Per layer (a column each): expert load over training as a heatmap (share of routed choices per
expert at every logged train step), mean k over training, and the histogram of k at the first and
at the last logged step. Token-routed runs log layer{i}/expert_load and layer{i}/k_histogram.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from smoe.errors import UserError
from smoe.quality.figures import _pyplot, _save
from smoe.run_log import METRICS_NAME


def routing_series(run_dir: Path) -> dict:
    """{steps [n], layers (the routed layers' numbers), load [layer][n, E], mean_k [layer][n],
    k_histogram [layer][n, K+1]} from the train rows."""
    path = run_dir / METRICS_NAME
    if not path.is_file():
        raise UserError(f"quality routing: {path} does not exist; give a run directory written by `smoe train`")
    rows = [row for row in map(json.loads, path.read_text().splitlines()) if row["split"] == "train"]
    layers = sorted(int(name.split("/")[0].removeprefix("layer")) for name in (rows[0] if rows else {})
                    if name.startswith("layer") and name.endswith("/k_histogram"))
    if not layers:
        raise UserError(f"quality routing: {path} has no per-layer routing metrics; the run must be a token-routed "
                        "model (model.kind: topk, or sectional with slice_experts > 1) with logged train steps")

    def stack(name: str) -> list[np.ndarray]:
        return [np.asarray([row[f"layer{layer}/{name}"] for row in rows], float) for layer in layers]

    return {"steps": np.asarray([row["step"] for row in rows]), "layers": layers, "load": stack("expert_load"),
            "mean_k": stack("mean_k"), "k_histogram": stack("k_histogram")}


def routing_figure(run_dir: Path, path: Path, title: str = "") -> dict:
    """Writes the figure; returns the series it drew."""
    series = routing_series(run_dir)
    steps, columns = series["steps"], len(series["load"])
    plt = _pyplot()
    fig, axes = plt.subplots(3, columns, figsize=(3.2 * columns, 8.0), squeeze=False)
    for column, layer in enumerate(series["layers"]):
        load = series["load"][column]
        image = axes[0, column].imshow(load.T, aspect="auto", origin="lower", cmap="viridis", vmin=0.0,
                                      extent=(steps[0], steps[-1], -0.5, load.shape[1] - 0.5))
        axes[0, column].set(title=f"layer {layer}: expert load", xlabel="step", ylabel="expert")
        fig.colorbar(image, ax=axes[0, column], fraction=0.046)
        axes[1, column].plot(steps, series["mean_k"][column], marker=".")
        axes[1, column].set(title=f"layer {layer}: mean k", xlabel="step", ylabel="experts per token")
        histogram = series["k_histogram"][column]
        ks = np.arange(histogram.shape[1])
        for index, style in ((0, {"alpha": 0.5}), (-1, {"alpha": 0.8})):
            axes[2, column].bar(ks, histogram[index], label=f"step {steps[index]}", **style)
        axes[2, column].set(title=f"layer {layer}: k histogram", xlabel="k", ylabel="share of tokens")
        axes[2, column].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    _save(fig, path)
    return series
