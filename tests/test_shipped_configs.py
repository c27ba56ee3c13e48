"""Every config shipped in experiments/configs loads and validates, and `smoe sweep --dry-run` lists it."""

from pathlib import Path

import pytest

from smoe.cli import main
from smoe.config import load_config, load_yaml
from smoe.measure.cli import load_points
from smoe.sweep.kinds import kind_for
from smoe.sweep.spec import expand, load_spec

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "experiments" / "configs").glob("*.yaml"))


def test_the_known_configs_are_all_here():
    names = {path.name for path in CONFIGS}
    assert {"gpu.yaml", "paper_grid.yaml", "default.yaml", "train_small.yaml", "measure_one.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_shipped_config_loads(path):
    raw = load_yaml(path)
    if "kind" in raw and "name" in raw:  # a sweep: every point converts to its kind's object
        spec = load_spec(path)
        kind = kind_for(spec.kind)
        points = [kind.parse(point) for point in expand(spec)]
        assert points and all(kind.size(point) for point in points)
    elif "points" in raw:  # `smoe measure` points
        assert all(point.config.mesh.size >= 1 for point in load_points(str(path), []))
    else:  # a run config
        cfg = load_config(path)
        assert cfg.train.batch_size % cfg.mesh.size == 0


def test_dry_run_lists_points_count_and_size_without_running(tmp_path, capsys):
    config = tmp_path / "s.yaml"
    config.write_text("name: s\nkind: measure\nbase: {d: 32, L: 16, batch: 8, n_layers: 2}\ngrid:\n  E: [1, 2, 4]\n")
    assert main(["sweep", str(config), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines[:-1]] == [f"E={e},L=16,batch=8,d=32,n_layers=2" for e in (1, 2, 4)]
    assert all("params=" in line and "train_step_flops=" in line for line in lines[:-1])
    assert lines[-1].startswith("sweep s: 3 points;") and "nothing ran" in lines[-1]
    assert not list(tmp_path.glob("*.sqlite")) and not (tmp_path / "out").exists()


def test_dry_run_refuses_a_bad_point(tmp_path, capsys):
    config = tmp_path / "s.yaml"
    config.write_text("name: s\nkind: measure\nbase: {d: 32}\ngrid:\n  E: [3]\n")
    assert main(["sweep", str(config), "--dry-run"]) == 2
    assert "point.E (model.n_experts)" in capsys.readouterr().err
