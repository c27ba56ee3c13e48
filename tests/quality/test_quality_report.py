"""Report logic on synthetic rows with known answers: winners, time-to-loss, laws, figures."""

import json
import math

import numpy as np
import pytest

from smoe.fit import loss_laws as laws
from smoe.quality import figures, report
from smoe.quality.cli import write_report
from smoe.sweep.runner import run_sweep
from smoe.sweep.spec import SweepSpec

C1, C2 = 1e11, 4e11
GAMMA = 0.1


def _row(budget, family, d_model, seed, n_experts=1, shorten=1, bonus=0.0, seconds_per_step=0.01):
    label = "dense" if family == "dense" else f"sectional E{n_experts} r{shorten}"
    # Loss follows k C^-gamma exactly, shifted per model; seeds add a symmetric +-0.01 so means stay exact.
    final = 3.0 * budget ** -GAMMA * 10 + bonus + 0.01 * (seed - 1) * (budget == C1)
    steps = 100
    curve = [[s, final + (steps - s) / steps] for s in (25, 50, 75, 100)]
    return {"budget": budget, "label": label, "family": family, "d_model": d_model, "seed": seed,
            "n_experts": n_experts, "shorten": shorten, "val_ce": final, "val_bpb": final / math.log(2),
            "seconds_per_step": seconds_per_step, "eval_curve": curve, "params_total": d_model * 1000 // n_experts,
            "params_active": d_model * 1000 // n_experts, "tokens_per_s": 1e4, "train_flops_per_token": 1e6,
            "steps": steps, "seq_len": 64}


def _rows():
    rows = []
    for budget in (C1, C2):
        for seed in ((0, 1, 2) if budget == C1 else (0,)):
            for d in (32, 64):
                rows.append(_row(budget, "dense", d, seed, bonus=0.1 if d == 32 else 0.0))
                # sectional: 0.05 nats worse than the best dense, but twice as fast per step
                rows.append(_row(budget, "sectional", d, seed, 4, 2, bonus=0.05 + (0.1 if d == 32 else 0.0),
                                 seconds_per_step=0.005))
    rows += [_row(C1, "sectional", 64, 0, e, 2, bonus=0.01 * e) for e in (1, 2, 8, 16)]
    return rows


def test_compare_budget_names_winners_and_interpolates_time_to_loss():
    settings = report.settings(_rows())
    assert report.iso_flop_labels(settings) == ["dense", "sectional E4 r2"]
    result = report.compare_budget(settings, C1)
    assert result["loss_winner"] == "dense"
    best = {f["label"]: f for f in result["families"]}
    assert best["dense"]["setting"].d_model == 64
    assert best["dense"]["setting"].std("val_ce") == pytest.approx(0.01)
    # target = sectional's final loss; dense's curve (final + (100 - s)/100) reaches final + 0.05 at step 95
    assert result["target_ce"] == pytest.approx(best["sectional E4 r2"]["setting"].mean("val_ce"))
    assert best["dense"]["time_to_loss_s"] == pytest.approx(95 * 0.01)
    assert best["sectional E4 r2"]["time_to_loss_s"] == pytest.approx(100 * 0.005)
    assert result["time_winner"] == "sectional E4 r2"
    table = report.budget_table(result)
    assert "| dense | 64 |" in table and "+0.0721 (" in table  # 0.05 nats = 0.0721 bits


def test_budget_law_recovers_the_exponent_and_clark_needs_five_settings(tmp_path):
    settings = report.settings(_rows())
    fits = laws.fit_budget_law(settings, bootstrap=50)
    # the loss is 30 C^-0.1 + bonus; the fit through two points of it lands near 0.1
    assert fits["dense"]["gamma"] == pytest.approx(GAMMA, rel=0.1)
    lo, hi = fits["dense"]["gamma_ci95"]
    assert lo <= hi
    groups = laws.clark_groups(settings)
    assert list(groups) == [(C1, 2)]
    group = groups[(C1, 2)]
    assert sorted(s.n_experts for s in group) == [1, 2, 4, 4, 8, 16]
    assert laws.fit_clark_group(group, bootstrap=5)["fitted"]
    assert not laws.fit_clark_group(group[:4], bootstrap=5)["fitted"]
    laws.write_clark_csv(group, tmp_path / "clark.csv")
    assert (tmp_path / "clark.csv").read_text().splitlines()[0] == "N,E,loss,d_model"


def test_figures_plot_each_setting_where_it_belongs(tmp_path, monkeypatch):
    import matplotlib.image

    settings = report.settings(_rows())
    drawn = {}
    save = figures._save

    def keep(fig, path):  # what each panel plots, read before the figure is closed
        drawn[path.name] = [{c.get_label(): (list(c.lines[0].get_xdata()), list(c.lines[0].get_ydata()))
                             for c in ax.containers} for ax in fig.axes]
        save(fig, path)

    monkeypatch.setattr(figures, "_save", keep)
    figures.iso_flop_figure(settings, tmp_path / "iso.png")
    figures.loss_vs_e_figure(settings, tmp_path / "e.png")
    iso, by_e = drawn["iso.png"], drawn["e.png"]
    assert len(iso) == 2, "one iso-FLOP panel per budget"
    for panel, budget in zip(iso, (C1, C2)):
        assert set(panel) == {"dense", "sectional E4 r2"}
        dense = sorted((s for s in settings if s.budget == budget and s.label == "dense"), key=lambda s: s.d_model)
        assert panel["dense"] == ([s.runs[0]["params_total"] for s in dense], [s.mean("val_bpb") for s in dense])
    assert len(by_e) == 1 and list(by_e[0]) == ["sectional, sequence shortened r=2"]
    e_values, losses = by_e[0]["sectional, sequence shortened r=2"]
    assert e_values == [1, 2, 4, 8, 16] and losses[-1] > losses[0]  # bonus 0.01 E: worse with more experts
    for name, width in (("iso.png", 2 * 5.5 * 110), ("e.png", 5.5 * 110)):
        image = matplotlib.image.imread(tmp_path / name)
        assert image.shape[1] == pytest.approx(width, abs=2) and image.std() > 0.01, name


def test_write_report_from_a_stored_sweep(tmp_path):
    rows = _rows()
    spec = SweepSpec.from_dict({"name": "synthetic-quality", "kind": "stored",
                                "grid": {"index": list(range(len(rows)))}})
    run_sweep(spec, tmp_path, lambda point: rows[point["index"]], progress=False)
    text = write_report(tmp_path, tmp_path, bootstrap=5)
    assert "## Budget 1e+11 FLOPs" in text and "## Budget 4e+11 FLOPs" in text
    assert "sectional E4 r2 vs dense: 0.0721 bpb" in text and "worse" in text
    fits = json.loads((tmp_path / "fits.json").read_text())
    assert set(fits["loss_vs_budget"]) == {"dense", "sectional E4 r2"}
    assert np.isfinite(fits["clark"]["clark_C1e+11_r2.csv"]["params"]["b"])
