"""Run every point of a sweep that is not yet done, committing each result as soon as it exists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from smoe.sweep.spec import SweepSpec, expand, point_key
from smoe.sweep.store import ResultStore

PointFn = Callable[[dict], dict]


def run_sweep(spec: SweepSpec, out_dir: str | Path, run_point: PointFn, progress: bool = True) -> dict[str, int]:
    """Points left `running` by a killed run, `failed`, or never started are (re)run; `done` ones are skipped.
    A point whose function raises is marked failed and the sweep moves on; returns the store's status counts.
    The bar shows on stderr only when it is a terminal and `progress` is set."""
    points = expand(spec)
    with ResultStore(out_dir) as store:
        store.open_for(spec)
        done = store.done_keys()
        todo = [(point_key(point), point) for point in points if point_key(point) not in done]
        bar = tqdm(total=len(points), initial=len(points) - len(todo), desc=f"sweep {spec.name}",
                   unit="point", disable=None if progress else True)
        # On Ctrl-C the done points are committed; the one cut off stays `running` and is redone on
        # resume (smoe/sweep/cli.py prints the command).
        with bar:
            for key, point in todo:
                _run_point(store, key, point, run_point)
                bar.update(1)
        return store.status()


def _run_point(store: ResultStore, key: str, point: dict, run_point: PointFn) -> None:
    store.mark_running(key, point)
    try:
        # A copy, so a point function that mutates its input cannot alter what gets stored.
        result = run_point(dict(point))
        _check_result(result)
    except Exception as err:  # noqa: BLE001 - any point failure is recorded, not fatal
        store.mark_failed(key, _one_line(err))
    else:
        store.mark_done(key, result)


def _check_result(result: object) -> None:
    # Checked before mark_done so a bad result fails its own point instead of aborting the sweep.
    if not isinstance(result, dict):
        raise TypeError(f"point function must return a dict, got {type(result).__name__}")
    json.dumps(result)


def _one_line(err: Exception) -> str:
    message = str(err).strip().splitlines()
    return f"{type(err).__name__}: {message[0]}" if message else type(err).__name__
