"""`smoe fit DIR` on a synthetic paired setting: one sweep point with every E timed in rounds beside
the dense baseline, as `experts: [...]` points store it."""

import csv
import json

import numpy as np
import pytest

from smoe.cli import main
from smoe.sweep.spec import SweepSpec, expand, point_key
from smoe.sweep.store import ResultStore

EXPERTS = (1, 2, 4, 8, 16, 32)
DEVICES = 8
ROUNDS = 9
# Work-reading truth: S(E) = 0.05 + 0.4/E + 2e-4 E^2, E_opt = 10, so E = 8 is the fastest measured E.
STEP = {"const": 0.05, "inv_e": 0.4, "alpha": 2e-4}
DENSE_S = 0.1
LATENCY, PER_BYTE, LAUNCH = 2e-5, 1e-9, 1e-4


def _step(e):
    return STEP["const"] + STEP["inv_e"] / e + STEP["alpha"] * e**2


def _traffic(e, scale):
    m = min(e, DEVICES)
    local = 4 * scale * 16 * 128 * 128 / DEVICES
    return 2 * (m - 1), 2 * local * (m - 1) / m


def _write(directory, drift: float, seed: int = 0) -> None:
    """drift: the machine slows by this fraction from the first round to the last (all programs alike)."""
    spec = SweepSpec(name="paired", kind="measure", base={"d": 128, "devices": DEVICES, "experts": list(EXPERTS)})
    (point,) = expand(spec)
    rng = np.random.default_rng(seed)
    speed = 1 + drift * np.linspace(0, 1, ROUNDS)

    def noisy(value):
        return (value * speed * (1 + 0.01 * rng.standard_normal(ROUNDS))).tolist()

    rows = []
    for e in EXPERTS:
        row = {"kind": "sectional", "E": e, "mesh_expert": min(e, DEVICES), "mesh_data": DEVICES // min(e, DEVICES),
               "train_step.samples_s": noisy(_step(e)), "experts.samples_s": noisy(0.002 + 1e-5 * e)}
        for scale, name in ((1, "exchange"), (4, "exchange_x4"), (16, "exchange_x16")):
            messages, size = _traffic(e, scale)
            row |= {f"{name}.messages_per_device": messages, f"{name}.bytes_per_device": size,
                    f"{name}.samples_s": noisy(LAUNCH + LATENCY * messages + PER_BYTE * size)}
        rows.append(row)
    shared = {"backend": "cpu", "paired": True, "rounds": ROUNDS, "baseline.dense.train_step.samples_s": noisy(DENSE_S)}
    with ResultStore(directory) as store:
        store.open_for(spec)
        store.mark_running(point_key(point), point)
        store.mark_done(point_key(point), {"rows": rows} | shared)


def _fit(directory, capsys, *extra):
    assert main(["fit", str(directory), "--bootstrap", "200", "--json", *extra]) == 0
    (group,) = json.loads(capsys.readouterr().out)["groups"]
    return group


def test_paired_setting_gives_the_verdict_drift_and_exchange_split(tmp_path, capsys):
    _write(tmp_path, drift=0.0)
    group = _fit(tmp_path, capsys, "--overhead", "quadratic")
    step = group["fits"]["train_step"]
    assert group["paired"] is True and group["rounds"] == ROUNDS and group["drift_cv"] < 0.03
    assert step["fit"]["paired"] is True and step["fit"]["e_opt"] == pytest.approx(10, rel=0.15)
    assert step["fit"]["predicted_best_e"] == 8 and step["measured_best_e"] == 8 and step["verdict"] == "agree"
    latency = group["exchange_latency_bandwidth"]
    assert latency["a"] == pytest.approx(LATENCY, rel=0.2) and latency["b"] == pytest.approx(PER_BYTE, rel=0.2)
    assert latency["ci"]["b"][0] <= latency["b"] <= latency["ci"]["b"][1]
    split = group["growth_split"]
    assert split["law"] == "quadratic" and split["expert_compute_scale"] == 3 * DEVICES
    assert [row["E"] for row in split["rows"]] == list(EXPERTS)
    # The truth's growth is neither the exchange (microseconds) nor the experts program (tens of microseconds).
    assert split["dominant"] == "neither (unexplained)"
    saved = json.loads((tmp_path / "fit.json").read_text())["groups"][0]
    assert saved["fits"]["train_step"]["verdict"] == "agree" and (tmp_path / "fit.png").stat().st_size > 10_000


def test_pairing_cancels_a_drift_of_40_percent(tmp_path, capsys):
    steady, drifting = tmp_path / "steady", tmp_path / "drifting"
    _write(steady, drift=0.0, seed=1)
    _write(drifting, drift=0.4, seed=1)
    a, b = (_fit(path, capsys, "--overhead", "quadratic") for path in (steady, drifting))
    assert b["drift_cv"] > 0.1
    for key in ("verdict", "measured_best_e"):
        assert a["fits"]["train_step"][key] == b["fits"]["train_step"][key] == {"verdict": "agree",
                                                                               "measured_best_e": 8}[key]
    assert b["fits"]["train_step"]["fit"]["e_opt"] == pytest.approx(a["fits"]["train_step"]["fit"]["e_opt"], rel=0.05)


def test_export_writes_one_row_per_e(tmp_path):
    _write(tmp_path, drift=0.0)
    assert main(["sweep", "--export", str(tmp_path), str(tmp_path / "m.csv")]) == 0
    with open(tmp_path / "m.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["E"]) for row in rows] == list(EXPERTS)
    assert [row["point"].rsplit("#", 1)[1] for row in rows] == [str(i) for i in range(len(EXPERTS))]
    assert all(row["paired"] == "True" and row["baseline.dense.train_step.samples_s"] for row in rows)
