"""Runner: resumption after SIGKILL, failure isolation and retry."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from smoe.sweep.kinds import synthetic_point
from smoe.sweep.runner import run_sweep
from smoe.sweep.spec import SweepSpec, expand, point_key

REPO = Path(__file__).resolve().parents[2]
KILL_SPEC = {"name": "kill", "kind": "synthetic", "base": {"a": 1.0, "b": 2.0, "alpha": 0.01, "sleep": 0.3},
             "grid": {"E": [1, 2, 4, 8, 16, 32], "repeat_tag": [0, 1]}}


def _done_rows(db: Path) -> dict:
    if not db.exists():
        return {}
    conn = sqlite3.connect(db, timeout=30)
    try:
        return {key: (result, finished) for key, result, finished in conn.execute(
            "SELECT key, result_json, finished FROM points WHERE status = 'done'")}
    except sqlite3.OperationalError:  # the child has not created the table yet
        return {}
    finally:
        conn.close()


def test_sigkill_mid_sweep_resumes_without_loss_or_duplicates(tmp_path):
    code = ("import sys; from smoe.sweep.spec import SweepSpec; from smoe.sweep.runner import run_sweep; "
            "from smoe.sweep.kinds import synthetic_point; "
            f"run_sweep(SweepSpec.from_dict({KILL_SPEC!r}), sys.argv[1], synthetic_point, progress=False)")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO,
                             env=os.environ | {"PYTHONPATH": str(REPO)})
    db = tmp_path / "results.sqlite"
    deadline = time.monotonic() + 20
    while len(before := _done_rows(db)) < 3:
        assert child.poll() is None, "sweep child exited before it could be killed"
        assert time.monotonic() < deadline, "sweep child made no progress"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    spec = SweepSpec.from_dict(KILL_SPEC)
    assert len(before) < len(expand(spec)), "child finished before the kill; the test proves nothing"

    status = run_sweep(spec, tmp_path, synthetic_point, progress=False)

    assert status == {"total": 12, "done": 12, "failed": 0, "running": 0}
    conn = sqlite3.connect(db)
    keys = [key for (key,) in conn.execute("SELECT key FROM points")]
    conn.close()
    assert sorted(keys) == sorted(point_key(p) for p in expand(spec))
    after = _done_rows(db)
    assert all(after[key] == value for key, value in before.items()), "a point done before the kill was redone"
    for point in expand(spec):
        assert json.loads(after[point_key(point)][0]) == synthetic_point(point | {"sleep": 0})


def test_failing_point_is_recorded_and_retried(tmp_path):
    spec = SweepSpec(name="f", kind="synthetic", grid={"E": [1, 2, 3]})
    calls = []

    def flaky(point):
        calls.append(point["E"])
        if point["E"] == 2:
            raise RuntimeError("out of memory\nlong traceback detail")
        return {"seconds": float(point["E"])}

    assert run_sweep(spec, tmp_path, flaky, progress=False) == {"total": 3, "done": 2, "failed": 1, "running": 0}
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    assert conn.execute("SELECT error FROM points WHERE status = 'failed'").fetchall() == [
        ("RuntimeError: out of memory",)]
    conn.close()

    status = run_sweep(spec, tmp_path, lambda point: {"seconds": float(point["E"])}, progress=False)
    assert status == {"total": 3, "done": 3, "failed": 0, "running": 0}
    assert calls == [1, 2, 3]


def test_non_dict_result_fails_only_that_point(tmp_path):
    spec = SweepSpec(name="n", kind="synthetic", grid={"E": [1, 2]})
    status = run_sweep(spec, tmp_path, lambda p: {"x": object()} if p["E"] == 1 else {"x": 1}, progress=False)
    assert status == {"total": 2, "done": 1, "failed": 1, "running": 0}
