"""`smoe sweep` subcommand: run, --status, --export, kind registry."""

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from smoe.errors import UserError
from smoe.sweep import cli
from smoe.sweep.kinds import KINDS, SweepKind

CONFIG = "name: c\nkind: synthetic\nbase: {a: 1.0, b: 4.0, alpha: 0.5}\ngrid:\n  E: [1, 2]\nrepeats: 2\n"


def _main(argv):
    parser = argparse.ArgumentParser(prog="smoe")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_run_status_export(tmp_path, capsys):
    config = tmp_path / "s.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    assert _main(["sweep", str(config), "--out", str(out), "--no-progress"]) == 0
    assert "4/4 done" in capsys.readouterr().out
    assert _main(["sweep", "--status", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"total": 4, "done": 4, "failed": 0}
    assert _main(["sweep", "--export", str(out), str(tmp_path / "r.csv")]) == 0
    with open(tmp_path / "r.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["point"] for row in rows] == [
        "E=1,a=1.0,alpha=0.5,b=4.0,repeat=0", "E=2,a=1.0,alpha=0.5,b=4.0,repeat=0",
        "E=1,a=1.0,alpha=0.5,b=4.0,repeat=1", "E=2,a=1.0,alpha=0.5,b=4.0,repeat=1"]
    assert float(rows[1]["seconds"]) == pytest.approx(1.0 + 4.0 / 2 + 0.5 * 4)


def test_unknown_kind_lists_known(tmp_path, monkeypatch):
    monkeypatch.setitem(KINDS, "extra", SweepKind(lambda point: {}))
    config = tmp_path / "s.yaml"
    config.write_text(CONFIG.replace("synthetic", "bogus"))
    with pytest.raises(UserError, match="unknown kind 'bogus'; known kinds: extra, measure, synthetic, train"):
        _main(["sweep", str(config), "--out", str(tmp_path / "o")])


def test_mode_errors(tmp_path):
    with pytest.raises(UserError, match="exactly one"):
        _main(["sweep"])
    with pytest.raises(UserError, match="--out DIR is required"):
        _main(["sweep", "x.yaml"])
    with pytest.raises(UserError, match="no results in"):
        _main(["sweep", "--status", str(tmp_path / "missing")])


def test_cli_import_does_not_load_jax():
    code = "import sys, smoe.sweep.cli; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
