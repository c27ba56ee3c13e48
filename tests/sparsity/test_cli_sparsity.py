"""End to end on a run trained for a few steps: collect, fit, eval, and the one-line errors."""

import json

import pytest

from smoe.cli import main
from smoe.data.fetch import fetch
from smoe.train import train
from tests.train.helpers import run_config, tiny_run

SECTIONAL_R1 = {"shorten": 1, "seq_len": 16}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    fetch("shakespeare")
    out = tmp_path_factory.mktemp("run")
    cfg = run_config(tiny_run(model=SECTIONAL_R1, train={"steps": 2, "eval_every": 2, "checkpoint_every": 2}))
    train(cfg, out, progress=False)
    return out


def _json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_collect_fit_eval(run_dir, tmp_path, capsys):
    data, shadow, dejavu = tmp_path / "data", tmp_path / "shadow", tmp_path / "dejavu"
    assert main(["sparsity", "collect", str(run_dir), "--out", str(data), "--windows", "32"]) == 0
    assert _json(capsys)["windows"] == 32
    for predictor, out in (("shadow", shadow), ("dejavu", dejavu)):
        assert main(["sparsity", "fit", str(run_dir), str(data), "--predictor", predictor, "--out", str(out),
                     "--epochs", "2"]) == 0
        meta = _json(capsys)
        assert -1.0 <= meta["spearman_heads"] <= 1.0 and meta["predictor_flops"] > 0
    # A second fit into the same --out is refused, and with --force replaces the first, leaving nothing aside.
    again = ["sparsity", "fit", str(run_dir), str(data), "--predictor", "shadow", "--out", str(shadow), "--epochs", "2"]
    assert main(again) == 2 and "pass --force" in capsys.readouterr().err
    assert main(again + ["--force"]) == 0 and _json(capsys)["predictor"] == "shadow"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "dejavu", "shadow"]
    common = ["--batches", "1", "--repeats", "2", "--json"]
    assert main(["sparsity", "eval", str(run_dir), "--predictor-dir", str(shadow), "--sparsity", "0", "--no-latency",
                 *common]) == 0
    dense = _json(capsys)
    assert dense["val_bpb"] == dense["dense_val_bpb"]
    assert dense["kept_heads"] == dense["total_heads"]
    for args in (["--predictor-dir", str(shadow), "--mode", "gather"],
                 ["--predictor-dir", str(dejavu), "--mode", "mask"], ["--oracle", "--mode", "gather", "--no-latency"]):
        assert main(["sparsity", "eval", str(run_dir), *args, "--sparsity", "0.5", *common]) == 0
        sparse = _json(capsys)
        assert sparse["dense_val_bpb"] == dense["dense_val_bpb"]
        assert sparse["val_bpb"] != sparse["dense_val_bpb"]
        assert sparse["kept_heads"] < sparse["total_heads"] and sparse["kept_neurons"] < sparse["total_neurons"]
        if "--no-latency" not in args:
            assert sparse["latency_ms"]["decode_b1"]["p50"] > 0 and sparse["predictor_ms"] > 0


def test_bad_inputs_are_one_line_errors(run_dir, tmp_path, capsys):
    cases = [
        (["sparsity", "collect", str(tmp_path / "nothing"), "--out", str(tmp_path / "d")], "RUN_DIR"),
        (["sparsity", "eval", str(run_dir), "--oracle", "--sparsity", "1.5"], "--sparsity"),
        (["sparsity", "fit", str(run_dir), str(tmp_path), "--predictor", "shadow", "--out", str(tmp_path / "p")],
         "DATA_DIR"),
        (["sparsity", "eval", str(run_dir), "--predictor-dir", str(tmp_path), "--sparsity", "0.5"], "--predictor-dir"),
    ]
    for argv, field in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and field in err, err
    assert not (tmp_path / "d").exists() and not (tmp_path / "p").exists()
