"""Every notebook runs top to bottom headless, writes its figures, and its .py/.ipynb pair agree.

The notebooks run in place (figlib and the committed results are found relative to them), with
SMOE_FIGURES_DIR pointing at an empty temporary folder, so a PNG found there was written by this run
and the committed figures are left untouched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

EXPECTED_FIGURES = {
    "01_cost_terms": ["01_cost_terms_parallel.png", "01_cost_terms_work.png", "01_total_vs_alpha.png"],
    "02_eopt_scaling": ["02_eopt_scaling_parallel.png", "02_eopt_scaling_work.png", "02_closed_form_ratio.png"],
    "03_efficiency_gain": ["03_gain_model.png", "03_gain_measured.png"],
    "04_measured_vs_model": ["04_measured_default.png", "04_exchange_default.png", "04_measured_multiprocess.png",
                             "04_eopt_measured_vs_predicted.png"],
    "05_loss_laws": ["05_chinchilla_fit.png", "05_bootstrap_intervals.png"],
    "06_sparse_attention": ["06_eopt_vs_k.png", "06_sparse_attention_results.png"],
}


def test_every_notebook_is_covered():
    assert sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.py")) == sorted(EXPECTED_FIGURES)


@pytest.mark.parametrize("name", sorted(EXPECTED_FIGURES))
def test_py_and_ipynb_in_sync(name):
    script = jupytext.read(NOTEBOOKS / f"{name}.py")
    notebook = jupytext.read(NOTEBOOKS / f"{name}.ipynb")
    as_pairs = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]  # noqa: E731
    assert as_pairs(script) == as_pairs(notebook), f"run `jupytext --to ipynb notebooks/{name}.py`"
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), "strip the outputs"


@pytest.mark.parametrize("name", sorted(EXPECTED_FIGURES))
def test_notebook_runs_and_writes_figures(name, tmp_path, monkeypatch):
    # The kernel inherits this environment; SMOE_REMEASURE must stay off so no sweep runs here.
    monkeypatch.setenv("SMOE_FIGURES_DIR", str(tmp_path))
    monkeypatch.delenv("SMOE_REMEASURE", raising=False)
    monkeypatch.delenv("SMOE_RESULTS_ROOT", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = jupytext.read(NOTEBOOKS / f"{name}.ipynb")
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert written == sorted(EXPECTED_FIGURES[name])
    assert all((tmp_path / f).stat().st_size > 10_000 for f in written)
