"""Result store: config binding, status counts, CSV/rows export."""

import csv

import pytest

from smoe.errors import UserError
from smoe.sweep.spec import SweepSpec, expand, point_key
from smoe.sweep.store import ResultStore

SPEC = SweepSpec(name="t", kind="synthetic", base={"a": 1.0}, grid={"E": [2, 4, 8]})


def test_changed_config_is_refused(tmp_path):
    with ResultStore(tmp_path) as store:
        store.open_for(SPEC)
    with ResultStore(tmp_path) as store:
        store.open_for(SPEC)  # same config reopens fine
        changed = SweepSpec(name="t", kind="synthetic", base={"a": 2.0}, grid={"E": [2, 4, 8]})
        with pytest.raises(UserError, match="made by a different config.*use a new --out or the original config"):
            store.open_for(changed)


def test_missing_dir_is_user_error(tmp_path):
    with pytest.raises(UserError, match="no results in"):
        ResultStore(tmp_path / "nope", create=False)
    assert not (tmp_path / "nope").exists()


def test_status_rows_and_csv(tmp_path):
    p2, p4, p8 = expand(SPEC)
    with ResultStore(tmp_path) as store:
        store.open_for(SPEC)
        assert store.status() == {"total": 3, "done": 0, "failed": 0, "running": 0}
        for point in (p2, p4, p8):
            store.mark_running(point_key(point), point)
        store.mark_done(point_key(p2), {"seconds": 0.5, "mem": {"peak": 10, "live": 3}, "hist": [1, 2]})
        store.mark_failed(point_key(p4), "ValueError: boom")
        assert store.status() == {"total": 3, "done": 1, "failed": 1, "running": 1}
        assert store.done_keys() == {point_key(p2)}
        assert store.failures() == [(point_key(p4), "ValueError: boom")]
        assert store.rows() == [p2 | {"seconds": 0.5, "mem": {"peak": 10, "live": 3}, "hist": [1, 2]}]
        out = tmp_path / "out.csv"
        assert store.export_csv(out) == 1
    with open(out, newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["point", "E", "a", "hist", "mem.live", "mem.peak", "seconds"]
        assert list(reader) == [{"point": "E=2,a=1.0", "E": "2", "a": "1.0", "hist": "[1, 2]",
                                 "mem.live": "3", "mem.peak": "10", "seconds": "0.5"}]
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_rerun_of_point_replaces_failure(tmp_path):
    (point,) = expand(SweepSpec(name="t", kind="synthetic", grid={"E": [2]}))
    key = point_key(point)
    with ResultStore(tmp_path) as store:
        store.mark_running(key, point)
        store.mark_failed(key, "RuntimeError: x")
        store.mark_running(key, point)
        store.mark_done(key, {"seconds": 1.0})
        assert store.status() == {"total": 1, "done": 1, "failed": 0, "running": 0}
        assert store.failures() == []
