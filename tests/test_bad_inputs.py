"""Bad input, as a new user gives it: every case ends in exit 2 (or the documented code) with one line
on stderr naming the thing and the fix, and leaves every file that was there byte-identical (and
writes nothing new). Cases run in-process through `smoe.cli.main`; none of them trains. Ctrl-C is
tested on real subprocesses: one line, exit 130, and the work done so far is kept."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml

from smoe.cli import main
from smoe.sweep.spec import load_spec
from smoe.sweep.store import DB_NAME, ResultStore
from tests.train.helpers import run_config, tiny_run

SWEEP = "name: c\nkind: synthetic\nbase: {a: 1.0, b: 4.0}\ngrid:\n  E: [1, 2]\n"


def _text(size: int) -> str:
    words = ("the", "quick", "expert", "routes", "each", "token", "to", "its", "section", "and", "back")
    line = " ".join(words[(i * 7) % len(words)] for i in range(12)) + ".\n"
    return (line * (size // len(line) + 1))[:size]


def _train_config(tmp: Path, **train) -> Path:
    corpus = tmp / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(_text(20_000))
    raw = tiny_run(data={"corpus": str(corpus)}, train=train)
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _train(tmp: Path, *extra: str, out: str = "out", **train) -> list[str]:
    return ["train", str(_train_config(tmp, **train)), "--out", str(tmp / out), "--no-progress", *extra]


def _saved_run(tmp: Path, **train) -> None:
    """A run directory as `smoe train` leaves it before its first checkpoint: just its config."""
    (tmp / "out").mkdir()
    corpus = tmp / "corpus.txt"
    corpus.write_text(_text(20_000))
    raw = tiny_run(data={"corpus": str(corpus)}, train=train)
    (tmp / "out" / "config.yaml").write_text(yaml.safe_dump(run_config(raw).to_dict(), sort_keys=False))


def _with_corpus(content: bytes, **model) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        (tmp / "corpus.txt").write_bytes(content)
        argv = _train(tmp)
        return argv + [arg for key, value in model.items() for arg in ("--set", f"model.{key}={value}")]
    return setup


def _config_file(content: bytes) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        (tmp / "bad.yaml").write_bytes(content)
        return ["train", str(tmp / "bad.yaml"), "--out", str(tmp / "out")]
    return setup


def _store(tmp: Path, rows: int = 0, pad: int = 200) -> Path:
    (tmp / "s.yaml").write_text(SWEEP)
    with ResultStore(tmp / "sweep") as store:
        store.open_for(load_spec(tmp / "s.yaml"))
        for i in range(rows):
            store.mark_running(f"p{i}", {"E": i, "pad": "x" * pad})
            store.mark_done(f"p{i}", {"seconds": float(i)})
    return tmp / "sweep" / DB_NAME


def _garbage_store(tmp: Path) -> None:
    (tmp / "s.yaml").write_text(SWEEP)
    (tmp / "sweep").mkdir()
    (tmp / "sweep" / DB_NAME).write_bytes(b"this is not a database\n" * 100)


def _truncated_store(tmp: Path) -> None:
    db = _store(tmp, rows=20, pad=4000)
    data = db.read_bytes()
    assert len(data) > 8192, len(data)
    db.write_bytes(data[: len(data) // 2])


def _binary(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    return path


def _measure_csv(tmp: Path, widths=(64,)) -> Path:
    """Rows as `smoe sweep --export` writes them for a measure sweep: E, setting, program samples."""
    lines = ["point,E,kind,backend,d,train_step.median_s,train_step.samples_s"]
    lines += [f'p{e}{d},{e},sectional,cpu,{d},0.1,"[0.1, 0.11]"' for d in widths for e in (1, 2, 4, 8)]
    path = tmp / "measurements.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _train_store(tmp: Path) -> None:
    """A store of `kind: train` rows (the fields a report groups by), enough to reach the --out checks."""
    (tmp / "t.yaml").write_text("name: q\nkind: synthetic\ngrid:\n  seed: [0]\n")
    with ResultStore(tmp / "sweep") as store:
        store.open_for(load_spec(tmp / "t.yaml"))
        store.mark_running("p", {"seed": 0})
        store.mark_done("p", {"budget": 1e12, "label": "dense", "d_model": 64, "family": "dense", "n_experts": 1,
                              "shorten": 1, "seed": 0, "val_ce": 3.0})


def _file(tmp: Path, name: str, text: str = "mine\n") -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Path], list[str]]
    message: str
    code: int = 2


def _sweep_status(tmp: Path) -> list[str]:
    return ["sweep", "--status", str(tmp / "sweep")]


CASES = [
    # smoe train: config shape and values
    Case("config is a YAML list", _config_file(b"- model\n- train\n"), "config: "),
    Case("config is a YAML scalar", _config_file(b"42\n"), "must be a YAML mapping"),
    Case("config is a binary file", _config_file(b"\x89PNG\x00\xff\xfe"), "is not valid YAML"),
    Case("config file missing", lambda t: ["train", str(t / "nope.yaml"), "--out", str(t / "out")], "not found"),
    Case("unknown config key", lambda t: _train(t, "--set", "model.bogus=1"), "model.bogus: unknown key"),
    Case("batch not divisible by mesh", lambda t: _train(t, "--set", "train.batch_size=7"), "train.batch_size"),
    # smoe train: --out and resume
    Case("--out is a file", lambda t: (t / "out").write_text("mine") and _train(t), "is a file, not a directory"),
    Case("--out inside a file", lambda t: (t / "f").write_text("mine") and _train(t, out="f/run"), "cannot create"),
    Case("--out not empty", lambda t: ((t / "out").mkdir(), (t / "out" / "x").write_text("x")) and _train(t),
         "is not empty; pass --resume"),
    Case("--resume without a run", lambda t: _train(t, "--resume"), "holds no run"),
    Case("--resume with a changed config",
         lambda t: (_saved_run(t), _train(t, "--resume", learning_rate=0.02))[1],
         "train.learning_rate: 0.01 -> 0.02"),
    Case("--resume with a damaged saved config",
         lambda t: (_saved_run(t), (t / "out" / "config.yaml").write_bytes(b"\x00\xff garbage"), _train(t, "--resume"))[2],
         "config.yaml is damaged"),
    Case("--resume-from a step never saved", lambda t: (_saved_run(t), _train(t, "--resume-from", "7"))[1],
         "no checkpoint at step 7; it has none"),
    Case("--extend to fewer steps", lambda t: (_saved_run(t), _train(t, "--extend", "--set", "train.steps=3"))[1],
         "train.steps=3 is below the run's 4"),
    Case("--extend without a run", lambda t: _train(t, "--extend", "--set", "train.steps=8"), "--extend: "),
    # smoe train: data checked before the run directory exists
    Case("corpus with NUL bytes", _with_corpus(b"text\x00" * 4000), "looks binary"),
    Case("corpus not UTF-8", _with_corpus(b"\x89PNG\xff\xfe" * 4000), "is not UTF-8 text"),
    Case("val split below one eval batch", _with_corpus(_text(2_000).encode()), "one eval batch needs"),
    Case("splits shorter than seq_len", _with_corpus(_text(2_000).encode(), seq_len=4096), "seq_len: 4096"),
    Case("corpus path missing", lambda t: _train(t, "--set", f"data.corpus={t / 'none.txt'}"),
         "neither an existing file"),
    # smoe sweep: damaged stores are named and never touched
    Case("status of a garbage store", lambda t: (_garbage_store(t), _sweep_status(t))[1], "results.sqlite is damaged"),
    Case("status of a truncated store", lambda t: (_truncated_store(t), _sweep_status(t))[1], "is damaged"),
    Case("export from a garbage store",
         lambda t: (_garbage_store(t), ["sweep", "--export", str(t / "sweep"), str(t / "r.csv")])[1], "is damaged"),
    Case("resume into a garbage store",
         lambda t: (_garbage_store(t), ["sweep", str(t / "s.yaml"), "--out", str(t / "sweep"), "--no-progress"])[1],
         "move it aside"),
    Case("resume with a changed sweep config",
         lambda t: (_store(t), (t / "s.yaml").write_text(SWEEP.replace("[1, 2]", "[1, 4]")),
                    ["sweep", str(t / "s.yaml"), "--out", str(t / "sweep")])[2],
         "grid.E: [1, 2] -> [1, 4]"),
    Case("status of a missing sweep", _sweep_status, "missing results.sqlite"),
    Case("export into a missing folder",
         lambda t: (_store(t), ["sweep", "--export", str(t / "sweep"), str(t / "no" / "r.csv")])[1], "does not exist"),
    Case("sweep --out is a file",
         lambda t: ((t / "s.yaml").write_text(SWEEP), (t / "o").write_text("mine"),
                    ["sweep", str(t / "s.yaml"), "--out", str(t / "o")])[2], "is a file"),
    Case("quality report on a timing sweep",
         lambda t: (_store(t, rows=2), ["quality", "report", str(t / "sweep")])[1], "lack budget, d_model, family"),
    Case("sweep config is a YAML list", lambda t: ["sweep", str(_file(t, "s.yaml", "- E\n- d\n")), "--out",
                                                    str(t / "o")], "the file must be a mapping"),
    Case("sweep config is a YAML scalar", lambda t: ["sweep", str(_file(t, "s.yaml", "42\n")), "--dry-run"],
         "the file must be a mapping"),
    Case("export onto an existing file",
         lambda t: (_store(t, rows=1), ["sweep", "--export", str(t / "sweep"), str(_file(t, "r.csv"))])[1],
         "r.csv already exists; pass --force"),
    Case("export onto a directory",
         lambda t: (_store(t, rows=1), (t / "d").mkdir(), ["sweep", "--export", str(t / "sweep"), str(t / "d")])[2],
         "is a directory; give a file name"),
    Case("export with one argument", lambda t: ["sweep", "--export", str(t)], "expected 2 arguments"),
    Case("sweep with no mode", lambda t: ["sweep"], "give exactly one of"),
    # smoe measure
    Case("measure config is a YAML list", lambda t: ["measure", str(_file(t, "m.yaml", "- E\n"))], "must be a mapping"),
    Case("measure config is a YAML scalar", lambda t: ["measure", str(_file(t, "m.yaml", "8\n"))], "must be a mapping"),
    Case("measure --repeats 0", lambda t: ["measure", str(_file(t, "m.yaml", "E: 2\n")), "--repeats", "0"],
         "--repeats: must be >= 1"),
    Case("measure with an unknown point key", lambda t: ["measure", str(_file(t, "m.yaml", "E: 2\nbogus: 1\n"))],
         "bogus"),
    # smoe fit
    Case("fit on a binary file", lambda t: ["fit", str(_binary(t, "m.csv"))], "is not UTF-8 text"),
    Case("fit DIR on a garbage store", lambda t: (_garbage_store(t), ["fit", str(t / "sweep")])[1], "is damaged"),
    Case("fit DIR on a truncated store", lambda t: (_truncated_store(t), ["fit", str(t / "sweep")])[1], "is damaged"),
    Case("fit a measure CSV without --program", lambda t: ["fit", str(_measure_csv(t))],
         "pick a column with --program ['train_step']"),
    Case("fit --program that is not in the file", lambda t: ["fit", str(_measure_csv(t)), "--program", "forward"],
         "no E and forward.samples_s columns; programs in this file: ['train_step']"),
    Case("fit --program over two settings",
         lambda t: ["fit", str(_measure_csv(t, (64, 128))), "--program", "train_step"],
         "records hold components ['d=128', 'd=64']; choose one with --component"),
    Case("fit --program on a sweep DIR", lambda t: (_store(t), ["fit", str(t / "sweep"), "--program", "train_step"])[1],
         "--program and --component read a file"),
    Case("fit --overhead unknown",
         lambda t: ["fit", str(_measure_csv(t)), "--program", "train_step", "--overhead", "x"],
         "--overhead must be one of"),
    # smoe fit-law
    Case("fit-law on a binary file", lambda t: ["fit-law", str(_binary(t, "l.csv"))], "is not UTF-8 text"),
    Case("fit-law on headers it does not know", lambda t: ["fit-law", str(_file(t, "l.csv", "params,tokens,loss\n"))],
         "header lacks ['N', 'D']; need columns ['N', 'D', 'loss'] (name other headers with --columns"),
    Case("fit-law --columns without =", lambda t: ["fit-law", str(_file(t, "l.csv")), "--columns", "N"],
         "--columns: 'N' must look like NAME=HEADER"),
    Case("fit-law --columns with a name of another form",
         lambda t: ["fit-law", str(_file(t, "l.csv")), "--columns", "G=granularity"],
         "'G' is not a column of this form"),
    # smoe eopt
    Case("eopt with no feasible E for a prime d",
         lambda t: ["eopt", "--d", "1000000007", "--seq", "1024", "--alpha", "1", "--heads", "3"],
         "check that heads divides d0"),
    Case("eopt --alpha 0", lambda t: ["eopt", "--d", "64", "--seq", "128", "--alpha", "0"], "alpha must be positive"),
    Case("eopt --d not a number", lambda t: ["eopt", "--d", "wide", "--seq", "128", "--alpha", "1"],
         "argument --d: invalid int value"),
    # smoe quality
    Case("quality report --out holding a report",
         lambda t: (_train_store(t), _file(t, "mine/results.md"),
                    ["quality", "report", str(t / "sweep"), "--out", str(t / "mine")])[2],
         "already holds results.md; pass --force"),
    Case("quality report --out is a file",
         lambda t: (_train_store(t), ["quality", "report", str(t / "sweep"), "--out", str(_file(t, "f"))])[1],
         "is a file, not a directory"),
    Case("quality report of a missing sweep", lambda t: ["quality", "report", str(t / "none")],
         "missing results.sqlite"),
    # smoe data
    Case("data info on a binary file", lambda t: ["data", "info", str(_binary(t, "b.txt"))], "is not UTF-8 text"),
    Case("data info on a missing path", lambda t: ["data", "info", str(t / "none.txt")], "neither an existing file"),
    Case("data fetch of an unknown corpus", lambda t: ["data", "fetch", "nope", "--cache", str(t / "c")], "nope"),
    # smoe sparsity
    Case("sparsity collect from a folder without a run",
         lambda t: (t / "run").mkdir() or ["sparsity", "collect", str(t / "run"), "--out", str(t / "data")],
         "holds no run"),
    Case("sparsity collect --out is a file",
         lambda t: ["sparsity", "collect", str(t), "--out", str(_file(t, "data"))], "data is a file"),
    Case("sparsity collect --out not empty", lambda t: ["sparsity", "collect", str(t), "--out",
                                                         str(_file(t, "data/x").parent)], "is not empty; pass --force"),
    Case("sparsity fit --force over files it did not write",
         lambda t: ["sparsity", "fit", str(t), str(t), "--predictor", "shadow", "--out", str(_file(t, "p/x").parent),
                    "--force"], "did not write"),
]


def _tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, tmp_path, capsys):
    argv = case.setup(tmp_path)
    before = _tree(tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == case.code, err
    assert len(err) == 1 and err[0].startswith("smoe: error: ") and case.message in err[0], err
    assert "None" not in err[0] and "Traceback" not in err[0]
    assert _tree(tmp_path) == before



def _interrupt_when(process: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the command never got going"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)


def _smoe(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "smoe.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_ctrl_c_in_train_is_one_line_exit_130(tmp_path):
    argv = _train(tmp_path, steps=10_000, checkpoint_every=2, eval_every=10_000)
    metrics = tmp_path / "out" / "metrics.jsonl"
    process = _smoe(*argv)
    _interrupt_when(process, lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 3)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("smoe: interrupted; resume with: smoe train ") and last.endswith(" --resume"), err
    assert (tmp_path / "out" / "checkpoints").is_dir()


def test_ctrl_c_in_sweep_is_one_line_exit_130_and_resumes(tmp_path):
    config = tmp_path / "s.yaml"
    # 16 points of 0.3 s: long enough that a loaded machine still delivers the interrupt mid-sweep
    config.write_text("name: slow\nkind: synthetic\nbase: {a: 1.0, sleep: 0.3}\ngrid:\n  E: %s\n" % list(range(1, 17)))
    out = tmp_path / "sweep"
    process = _smoe("sweep", str(config), "--out", str(out), "--no-progress")
    _interrupt_when(process, lambda: (out / DB_NAME).is_file() and time.sleep(0.8) is None)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    lines = err.strip().splitlines()
    resume = f"smoe: interrupted; resume with: smoe sweep {config} --out {out} ("
    assert len(lines) == 1 and lines[0].startswith(resume), err
    assert "points kept in" in lines[0], err
    assert main(["sweep", str(config), "--out", str(out), "--no-progress"]) == 0


def test_export_replaces_an_existing_file_only_with_force(tmp_path, capsys):
    _store(tmp_path, rows=2)
    target = _file(tmp_path, "r.csv")
    assert main(["sweep", "--export", str(tmp_path / "sweep"), str(target)]) == 2
    assert target.read_text() == "mine\n"
    assert main(["sweep", "--export", str(tmp_path / "sweep"), str(target), "--force"]) == 0
    assert target.read_text().splitlines()[0].startswith("point,") and len(target.read_text().splitlines()) == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind


def test_fit_law_reads_the_committed_chinchilla_file_with_columns():
    from theory.law_data import load_chinchilla_reference, load_law_csv, parse_columns

    mapped = load_law_csv(Path(__file__).parents[1] / "theory/data/chinchilla_svg_extracted.csv", ("N", "D"),
                          parse_columns("N=Model Size,C=Training FLOP"))
    reference = load_chinchilla_reference()  # the same columns, minus its 5 highest-loss outliers
    assert mapped["N"].size == reference["N"].size + 5
    for column in ("N", "D", "loss"):
        assert set(reference[column].tolist()) <= set(mapped[column].tolist()), column


def test_fit_law_warns_in_one_line(tmp_path, capsys, monkeypatch):
    from theory import cli as theory_cli
    from theory.loss_laws import fit_law

    # 11 points within 1% in N and D cannot separate the terms (tests/theory/test_loss_laws.py); two
    # starts instead of eight keep the real fit fast.
    monkeypatch.setattr(theory_cli, "fit_law", functools.partial(fit_law, n_starts=2))
    rng = np.random.default_rng(0)
    rows = zip(1e8 * (1 + 0.01 * rng.random(11)), 2e9 * (1 + 0.01 * rng.random(11)), 3.0 + 0.01 * rng.random(11))
    path = _file(tmp_path, "law.csv", "N,D,loss\n" + "".join(f"{n},{d},{loss}\n" for n, d, loss in rows))
    assert main(["fit-law", str(path), "--bootstrap", "20", "--quiet"]) == 0
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("smoe: warning: fit-law: chinchilla fit is underdetermined") and line.endswith("skipped")
    assert "intervals n/a: the fit is underdetermined" in captured.out


def test_ctrl_c_of_a_stateless_command_is_one_line_naming_the_rerun(tmp_path, capsys, monkeypatch):
    from smoe.measure import cli as measure_cli

    def interrupt(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(measure_cli, "load_points", interrupt)
    config = _file(tmp_path, "m.yaml", "E: 2\n")
    assert main(["measure", str(config), "--set", "E=4"]) == 130
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"smoe: interrupted; resume with: smoe measure {config} --set E=4 (nothing was half-written)"
