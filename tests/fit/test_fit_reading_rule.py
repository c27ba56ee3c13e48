"""`smoe fit` reads a sweep DIR and the same sweep exported to CSV (`--program`) by one rule, and reads
the committed measurement files."""

import json
from pathlib import Path

import numpy as np
import pytest

from smoe.cli import main
from smoe.sweep.spec import SweepSpec, expand, point_key
from smoe.sweep.store import ResultStore

REPO = Path(__file__).resolve().parents[2]


def _sweep(directory: Path) -> None:
    """Two settings (d), six E each; CPU records, so both forms must read them with the work basis."""
    spec = SweepSpec(name="rule", kind="measure", base={"L": 64, "devices": 8},
                     grid={"d": [64, 128], "E": [1, 2, 4, 8, 16, 32]})
    rng = np.random.default_rng(0)
    with ResultStore(directory) as store:
        store.open_for(spec)
        for point in expand(spec):
            e, scale = point["E"], point["d"] / 64
            samples = (scale * (0.05 + 0.4 / e + 2e-4 * e**2) * (1 + 0.01 * rng.standard_normal(5))).tolist()
            store.mark_running(point_key(point), point)
            store.mark_done(point_key(point), {"kind": "sectional", "backend": "cpu", "train_step.samples_s": samples,
                                               "train_step.median_s": float(np.median(samples))})


def _json(argv, capsys) -> dict:
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_csv_export_reads_like_its_sweep_dir(tmp_path, capsys):
    _sweep(tmp_path / "sweep")
    assert main(["sweep", "--export", str(tmp_path / "sweep"), str(tmp_path / "m.csv")]) == 0
    capsys.readouterr()
    groups = _json(["fit", str(tmp_path / "sweep"), "--bootstrap", "0"], capsys)["groups"]
    assert main(["fit", str(tmp_path / "sweep"), "--bootstrap", "0"]) == 0  # the printed summary, no optimum
    assert "verdict: None; slowdown n/a (no measured optimum)" in capsys.readouterr().out
    for group in groups:
        from_dir = group["fits"]["train_step"]["fit"]
        from_csv = _json(["fit", str(tmp_path / "m.csv"), "--program", "train_step", "--bootstrap", "0",
                          "--component", f"d={group['setting']['d']}"], capsys)
        assert from_csv["regime"] == from_dir["regime"] == "work"
        assert from_csv["overhead_law"] == from_dir["overhead_law"]
        for key in ("e_opt", "holdout_mape"):  # the largest E held out in both
            assert from_csv[key] == pytest.approx(from_dir[key], rel=1e-9), key
        assert from_csv["coefficients"] == pytest.approx(from_dir["coefficients"], rel=1e-9)


def test_the_committed_measurements_fit_with_program(capsys):
    data = _json(["fit", str(REPO / "experiments/results/multiprocess/measurements.csv"), "--program", "train_step",
                  "--component", "processes=2", "--bootstrap", "0"], capsys)
    assert data["regime"] == "work" and data["holdout_mape"] is not None and data["coefficients"]["const"] > 0


def test_reasons_stand_beside_inf_and_n_a(tmp_path, capsys):
    # Seconds that only fall with E: no law term grows, so E_opt is +inf, and the output says why.
    path = tmp_path / "t.csv"
    path.write_text("E,seconds\n" + "".join(f"{e},{1 + 1 / e}\n" for e in (1, 2, 4, 8) for _ in range(2)))
    assert main(["fit", str(path), "--overhead", "none", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "E_opt = inf (no fitted term grows with E" in out and "best integer = n/a (no finite E_opt" in out
    assert "verdict n/a: --bootstrap 0" in out and "held-out MAPE (E > 4)" in out
