"""The eopt / fit-law subcommands: JSON contract, human output, one-line errors (`smoe fit`: tests/fit)."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import theory
from theory import InputError, cli


def run(argv, capsys):
    parser = argparse.ArgumentParser(prog="smoe")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out


def test_eopt_json_keys_and_values(capsys):
    code, out = run(["eopt", "--d", "4096", "--seq", "4096", "--seq-reduced", "2048", "--alpha", "1e3", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and set(data) == {"e_opt", "e_opt_integer", "table"}
    assert data["e_opt"] == pytest.approx(208.653, rel=1e-4)
    assert data["e_opt_integer"] == 256  # feasible E divide d0: 256 beats 128
    assert [row["E"] for row in data["table"]] == [2**k for k in range(13)]
    assert min(data["table"], key=lambda r: r["S"])["E"] == data["e_opt_integer"]


def test_eopt_human_output_marks_the_best_feasible_e(capsys):
    code, out = run(["eopt", "--d", "4096", "--seq", "4096", "--alpha", "1e6", "--heads", "32", "--regime", "work"], capsys)
    assert code == 0
    best = [line for line in out.splitlines() if "<- best feasible" in line]
    assert len(best) == 1 and best[0].split()[0] == "64"
    assert "qkv-dominated" in out and "attention-dominated" not in out


@pytest.mark.parametrize(
    "argv, field",
    [
        (["eopt", "--d", "4096", "--seq", "128", "--alpha", "0"], "alpha"),
        (["eopt", "--d", "4096", "--seq", "128", "--alpha", "-5"], "alpha"),
        (["eopt", "--d", "0", "--seq", "128", "--alpha", "1"], "d0"),
        (["eopt", "--d", "64", "--seq", "-1", "--alpha", "1"], "seq_len"),
        (["eopt", "--d", "64", "--seq", "8", "--alpha", "1", "--regime", "fast"], "regime"),
        (["fit-law", "x.csv", "--form", "kaplan"], "form"),
    ],
)
def test_invalid_arguments_raise_one_line_input_errors(argv, field, capsys):
    with pytest.raises(InputError, match=field) as info:
        run(argv, capsys)
    assert "\n" not in str(info.value)


def test_fit_law_json_contract(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n_params, tokens = 10 ** rng.uniform(7, 10, 80), 10 ** rng.uniform(9, 12, 80)
    loss = 1.8 + 400 / n_params**0.34 + 2000 / tokens**0.37
    path = tmp_path / "law.csv"
    path.write_text("N,D,loss\n" + "".join(f"{a},{b},{c}\n" for a, b, c in zip(n_params, tokens, loss)))
    code, out = run(["fit-law", str(path), "--form", "chinchilla", "--bootstrap", "3", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and set(data) == {"params", "ci"}
    assert set(data["params"]) == {"E", "A", "B", "alpha", "beta"} == set(data["ci"])
    assert data["params"]["E"] == pytest.approx(1.8, rel=0.01)
    with pytest.raises(InputError, match="header lacks"):
        run(["fit-law", str(path), "--form", "clark"], capsys)


def test_smoe_entry_point_exits_2_with_one_stderr_line():
    root = Path(theory.__file__).resolve().parent.parent
    argv = [sys.executable, "-m", "smoe.cli", "eopt", "--d", "64", "--seq", "8", "--alpha", "-1"]
    out = subprocess.run(argv, cwd=root, capture_output=True, text=True)
    if "ModuleNotFoundError" in out.stderr or "ImportError" in out.stderr:
        pytest.skip("smoe.cli cannot build its parser yet (its other subcommands are not written)")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "alpha" in out.stderr
