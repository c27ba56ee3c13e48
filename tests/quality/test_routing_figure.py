"""The routing figure draws what a run's metrics.jsonl logged: load heatmaps, mean k, k histograms per layer."""

import json

import numpy as np
import pytest

from smoe.errors import UserError
from smoe.quality import routing_figure
from smoe.run_log import METRICS_NAME

LAYERS, EXPERTS, STEPS = 2, 4, (10, 20, 30)


def _write_run(run_dir, routed=True, first_layer=0):
    run_dir.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for step in STEPS:
        row = {"step": step, "split": "train", "loss": 3.0}
        for layer in range(first_layer, first_layer + LAYERS) if routed else ():
            load = rng.dirichlet(np.ones(EXPERTS))
            histogram = rng.dirichlet(np.ones(EXPERTS + 1))
            row |= {f"layer{layer}/expert_load": load.tolist(), f"layer{layer}/k_histogram": histogram.tolist(),
                    f"layer{layer}/mean_k": float(histogram @ np.arange(EXPERTS + 1))}
        rows += [row, {"step": step, "split": "eval", "ce": 2.0}]
    (run_dir / METRICS_NAME).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


# first_layer 1: a sectional model with routed slices logs its expert layers, after one pre-expert block
@pytest.mark.parametrize("first_layer", [0, 1])
def test_figure_draws_every_layer_from_the_train_rows(tmp_path, monkeypatch, first_layer):
    import matplotlib.image

    rows = [row for row in _write_run(tmp_path / "run", first_layer=first_layer) if row["split"] == "train"]
    drawn = {}
    save = routing_figure._save

    def keep(fig, path):  # the heatmaps' data and the k curves, read before the figure is closed
        drawn["images"] = [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]
        drawn["curves"] = [list(ax.lines[0].get_ydata()) for ax in fig.axes if ax.lines]
        save(fig, path)

    monkeypatch.setattr(routing_figure, "_save", keep)
    series = routing_figure.routing_figure(tmp_path / "run", tmp_path / "routing.png")
    assert list(series["steps"]) == list(STEPS) and series["layers"] == list(range(first_layer, first_layer + LAYERS))
    for column, layer in enumerate(series["layers"]):
        expected = np.array([row[f"layer{layer}/expert_load"] for row in rows])
        np.testing.assert_allclose(drawn["images"][column], expected.T)  # experts up, steps across
        assert drawn["curves"][column] == [row[f"layer{layer}/mean_k"] for row in rows]
    image = matplotlib.image.imread(tmp_path / "routing.png")
    assert image.shape[1] == pytest.approx(3.2 * LAYERS * 110, abs=2) and image.std() > 0.01


def test_a_run_without_routing_metrics_is_a_user_error(tmp_path):
    _write_run(tmp_path / "dense", routed=False)
    with pytest.raises(UserError, match="no per-layer routing metrics") as err:
        routing_figure.routing_figure(tmp_path / "dense", tmp_path / "x.png")
    assert "\n" not in str(err.value) and not (tmp_path / "x.png").exists()
    with pytest.raises(UserError, match="does not exist"):
        routing_figure.routing_figure(tmp_path / "nowhere", tmp_path / "x.png")
