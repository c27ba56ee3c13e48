"""Which functions handle a sweep point, chosen by the config's `kind`.

A kind's module registers it when imported (`register_kind` at module level, jax-free; its run
function imports jax lazily). KIND_MODULES lists those modules; `kind_for` imports them on demand,
so no CLI parser has to be built for a kind to exist.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Any, Callable

from smoe.errors import UserError
from smoe.sweep.spec import REPEAT_FIELD

KIND_MODULES = ("smoe.measure.cli", "smoe.quality.cli")


@dataclass(frozen=True)
class SweepKind:
    run: Callable[[Any], dict]  # one parsed point -> its JSON-able result
    # A point mapping -> the object `run` takes; called on every point before the first runs, so a
    # bad point is refused before anything is written.
    parse: Callable[[dict], Any] = lambda point: point
    # Process-wide set-up for all parsed points (emulated device count, corpus fetch).
    prepare: Callable[[list], None] = lambda points: None
    # What `smoe sweep --dry-run` shows per point: {"params": ..., "train_flops": ...}.
    size: Callable[[Any], dict] = lambda point: {}


def synthetic_point(point: dict) -> dict:
    """Cheap, deterministic stand-in for a measurement: seconds = a + b/E + alpha*E^2 (+ repeat jitter).
    `sleep` makes it slow enough for tests to kill a sweep mid-run."""
    experts = point["E"]
    a, b, alpha = point.get("a", 0.0), point.get("b", 0.0), point.get("alpha", 0.0)
    time.sleep(point.get("sleep", 0.0))
    # Knuth's multiplicative hash spreads repeat indices over [0, 1e-6) without any RNG state.
    jitter = (point.get(REPEAT_FIELD, 0) * 2654435761 % 1000) * 1e-9
    return {"seconds": a + b / experts + alpha * experts**2 + jitter}


KINDS: dict[str, SweepKind] = {"synthetic": SweepKind(synthetic_point)}


def register_kind(name: str, kind: SweepKind) -> None:
    KINDS[name] = kind


def kind_for(name: str) -> SweepKind:
    for module in KIND_MODULES:
        importlib.import_module(module)
    try:
        return KINDS[name]
    except KeyError:
        raise UserError(f"sweep: unknown kind {name!r}; known kinds: {', '.join(sorted(KINDS))}") from None
