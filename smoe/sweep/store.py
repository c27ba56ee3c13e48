"""Durable per-point sweep results in DIR/results.sqlite.

Every state change is its own committed transaction, so a process killed at any instant leaves
each point either fully done or not done (and the runner redoes it). A result `{"rows": [...],
**shared}` is several rows of one point, stored in one transaction (a measurement setting: one row
per E); reading and export give one row per entry, `point | shared | row`, keyed `KEY#i`."""

from __future__ import annotations

import contextlib
import csv
import json
import sqlite3
import time
from pathlib import Path
from typing import Iterator

from smoe.atomic import atomic_path
from smoe.errors import UserError
from smoe.sweep.spec import SweepSpec, expand, spec_hash, spec_json

DB_NAME = "results.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    key TEXT PRIMARY KEY,
    point_json TEXT NOT NULL,
    status TEXT NOT NULL CHECK(status IN ('running', 'done', 'failed')),
    result_json TEXT,
    error TEXT,
    started REAL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class ResultStore:
    def __init__(self, directory: str | Path, create: bool = True) -> None:
        self.dir = Path(directory)
        path = self.dir / DB_NAME
        if not create and not path.is_file():
            raise UserError(f"sweep: no results in {self.dir} (missing {DB_NAME}); run `smoe sweep CONFIG.yaml --out {self.dir}` first")
        if self.dir.exists() and not self.dir.is_dir():
            raise UserError(f"sweep: {self.dir} is a file, not a directory; choose another --out")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"sweep: cannot create {self.dir} ({err.strerror}); choose a writable --out") from None
        existed = path.is_file()
        # Autocommit mode: transactions are opened explicitly in _transaction, never implicitly.
        self._conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            if existed:
                problems = [row[0] for row in self._conn.execute("PRAGMA quick_check").fetchall()]
                if problems != ["ok"]:
                    raise sqlite3.DatabaseError(problems[0])
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
        except sqlite3.DatabaseError as err:
            self._conn.close()
            # Never repaired or deleted here: the file may hold hours of results a backup can restore.
            raise UserError(f"sweep: {path} is damaged ({err}); it was left untouched: restore it from a backup, "
                            "or move it aside and run the sweep into a new --out") from None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front, so a check-then-write cannot race another writer.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def open_for(self, spec: SweepSpec) -> None:
        """Bind this directory to `spec`; refuse a directory filled by a different config,
        since mixing results of two configs would silently corrupt the sweep."""
        digest = spec_hash(spec)
        with self._transaction():
            stored = self._meta("spec_hash")
            if stored is None:
                rows = [("spec_hash", digest), ("spec_json", spec_json(spec)), ("total", str(len(expand(spec))))]
                self._conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", rows)
            elif stored != digest:
                changes = _changes(json.loads(self._meta("spec_json") or "{}"), json.loads(spec_json(spec)))
                raise UserError(
                    f"sweep: {self.dir} was made by a different config ({'; '.join(changes) or 'hash ' + stored[:12]}); "
                    "use a new --out or the original config")

    def kind(self) -> str | None:
        """The `kind` of the sweep this directory holds (None before its first run)."""
        return json.loads(self._meta("spec_json") or "{}").get("kind")

    def mark_running(self, key: str, point: dict) -> None:
        with self._transaction():
            self._conn.execute(
                "INSERT INTO points (key, point_json, status, started) VALUES (?, ?, 'running', ?) "
                "ON CONFLICT(key) DO UPDATE SET status = 'running', point_json = excluded.point_json, "
                "result_json = NULL, error = NULL, started = excluded.started, finished = NULL",
                (key, json.dumps(point, sort_keys=True), time.time()))

    def mark_done(self, key: str, result: dict) -> None:
        self._finish(key, "done", json.dumps(result, sort_keys=True), None)

    def mark_failed(self, key: str, error: str) -> None:
        self._finish(key, "failed", None, error)

    def _finish(self, key: str, status: str, result_json: str | None, error: str | None) -> None:
        with self._transaction():
            updated = self._conn.execute(
                "UPDATE points SET status = ?, result_json = ?, error = ?, finished = ? WHERE key = ?",
                (status, result_json, error, time.time(), key)).rowcount
            if updated != 1:
                raise KeyError(f"sweep point {key!r} was never marked running")

    def status(self) -> dict[str, int]:
        counts = dict(self._conn.execute("SELECT status, COUNT(*) FROM points GROUP BY status").fetchall())
        total = self._meta("total")
        return {
            "total": int(total) if total is not None else sum(counts.values()),
            "done": counts.get("done", 0),
            "failed": counts.get("failed", 0),
            "running": counts.get("running", 0),
        }

    def done_keys(self) -> set[str]:
        return {key for (key,) in self._conn.execute("SELECT key FROM points WHERE status = 'done'")}

    def failures(self) -> list[tuple[str, str]]:
        return self._conn.execute("SELECT key, error FROM points WHERE status = 'failed' ORDER BY rowid").fetchall()

    def _done(self) -> list[tuple[str, dict, dict]]:
        # rowid order is first-run order, which follows the spec's expansion order.
        rows = self._conn.execute(
            "SELECT key, point_json, result_json FROM points WHERE status = 'done' ORDER BY rowid").fetchall()
        return [(key, json.loads(point), json.loads(result)) for key, point, result in rows]

    def _done_rows(self) -> list[tuple[str, dict, dict]]:
        out = []
        for key, point, result in self._done():
            rows = result_rows(result)
            out += [(key if len(rows) == 1 and rows[0] is result else f"{key}#{i}", point, row)
                    for i, row in enumerate(rows)]
        return out

    def rows(self) -> list[dict]:
        """Done rows as point | result (a result field overrides a point field of the same name)."""
        return [point | result for _, point, result in self._done_rows()]

    def export_csv(self, path: str | Path) -> int:
        """Write done rows to `path` atomically; returns the number of rows."""
        path = Path(path)
        flat = [{"point": key} | _flatten(point) | _flatten(result) for key, point, result in self._done_rows()]
        columns = list(dict.fromkeys(column for row in flat for column in row))
        with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(flat)
        return len(flat)


def _changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """`key.sub: old -> new` for each leaf that differs between two spec dicts."""
    changes = []
    for key in dict.fromkeys([*old, *new]):
        before, after = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            changes += _changes(before, after, f"{prefix}{key}.")
        elif before != after:
            changes.append(f"{prefix}{key}: {json.dumps(before)} -> {json.dumps(after)}")
    return changes


def result_rows(result: dict) -> list[dict]:
    """A result's rows: `shared | row` for each of its `rows`, or the result itself."""
    if not isinstance(result.get("rows"), list):
        return [result]
    shared = {k: v for k, v in result.items() if k != "rows"}
    return [shared | row for row in result["rows"]]


def _flatten(fields: dict) -> dict:
    """One level: {"a": {"b": 1}} -> {"a.b": 1}; anything deeper or list-valued becomes a JSON cell."""
    flat: dict = {}
    for name, value in fields.items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                flat[f"{name}.{sub}"] = _cell(inner)
        else:
            flat[name] = _cell(value)
    return flat


def _cell(value: object) -> object:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
