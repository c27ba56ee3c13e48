"""`smoe train` from the shell: bad configs exit 2 with one line and write nothing; 2 processes agree with 1."""

import pytest

from smoe.train import train
from tests.train.helpers import last_json_line, run_config, smoe_cli, tiny_run, write_config


@pytest.mark.parametrize("override,field", [
    ("model.n_experts=3", "model.n_experts"),
    ("model.bogus=1", "model.bogus"),
    ("mesh.data=16", "mesh"),
    ("train.batch_size=7", "train.batch_size"),
])
def test_bad_config_exits_2_with_one_line_and_writes_nothing(tmp_path, override, field):
    config = write_config(tmp_path / "run.yaml", tiny_run())
    out = tmp_path / "out"
    result = smoe_cli("train", str(config), "--set", override, "--out", str(out), "--no-progress")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0], result.stderr
    assert not out.exists()


def test_two_processes_match_one(shakespeare, tmp_path):
    raw = tiny_run(mesh={"data": 2, "expert": 1}, train={"steps": 2, "checkpoint_every": 2})
    config = write_config(tmp_path / "run.yaml", raw)
    single = train(run_config(raw), tmp_path / "single", progress=False)
    result = smoe_cli("train", str(config), "--out", str(tmp_path / "multi"), "--processes", "2", "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    # gloo's C++ "Rank N is connected" logging goes to stderr: the summary is all of stdout.
    assert len(result.stdout.strip().splitlines()) == 1, result.stdout
    multi = last_json_line(result.stdout)
    assert multi["train_loss"] == pytest.approx(float(single["train"]["loss"]), rel=1e-5)
    assert multi["eval_ce"] == pytest.approx(single["eval"]["ce"], rel=1e-5)
