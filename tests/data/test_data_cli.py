"""`smoe data` subcommands, driven through a parser built here (the main CLI needs other modules)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from smoe.data import cli
from smoe.errors import UserError


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="smoe")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_list_shows_every_corpus(tmp_path, capsys):
    assert _run(["data", "list", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("shakespeare", "moby-dick", "sotu"))
    assert "not fetched" in out


def test_info_on_a_folder(tmp_path, capsys):
    for i in range(5):
        (tmp_path / f"d{i}.txt").write_text("x" * 100)
    assert _run(["data", "info", str(tmp_path), "--val-fraction", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "train:" in out and "val:" in out


def test_unknown_corpus_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown corpus"):
        _run(["data", "fetch", "nope", "--cache", str(tmp_path)])


def test_info_unfetched_name_says_how_to_fetch(tmp_path):
    with pytest.raises(UserError, match="smoe data fetch sotu"):
        _run(["data", "info", "sotu", "--cache", str(tmp_path)])


def test_registration_does_not_import_jax():
    # The main CLI imports this module to build its parser; jax would make every command slow.
    code = "import sys, smoe.data.cli; assert 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
