"""Which function computes a point, chosen by the config's `kind`.

Other modules register their kinds by adding to POINT_RUNNERS at import time, e.g. from their
CLI `register()` (which `smoe` always imports); the function itself should import jax lazily."""

from __future__ import annotations

import time
from typing import Callable

from smoe.errors import UserError
from smoe.sweep.spec import REPEAT_FIELD


def synthetic_point(point: dict) -> dict:
    """Cheap, deterministic stand-in for a measurement: seconds = a + b/E + alpha*E^2 (+ repeat jitter).
    `sleep` makes it slow enough for tests to kill a sweep mid-run."""
    experts = point["E"]
    a, b, alpha = point.get("a", 0.0), point.get("b", 0.0), point.get("alpha", 0.0)
    time.sleep(point.get("sleep", 0.0))
    # Knuth's multiplicative hash spreads repeat indices over [0, 1e-6) without any RNG state.
    jitter = (point.get(REPEAT_FIELD, 0) * 2654435761 % 1000) * 1e-9
    return {"seconds": a + b / experts + alpha * experts**2 + jitter}


POINT_RUNNERS: dict[str, Callable[[dict], dict]] = {"synthetic": synthetic_point}
# Optional per-kind step run on all points before the first one: validate them (so a bad point is
# refused before anything is written) and set process-wide state such as the emulated device count.
POINT_PREPARERS: dict[str, Callable[[list[dict]], None]] = {}


def runner_for(kind: str) -> Callable[[dict], dict]:
    try:
        return POINT_RUNNERS[kind]
    except KeyError:
        raise UserError(f"sweep: unknown kind {kind!r}; known kinds: {', '.join(sorted(POINT_RUNNERS))}") from None
