"""Wall-clock timing of compiled JAX programs."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import jax


def time_fn(fn: Callable[..., Any], *args: Any, warmup: int = 2, repeats: int = 5) -> dict:
    """Median wall time of `fn(*args)` after `warmup` untimed calls.

    Warm-up absorbs compilation and first-touch allocation; the median resists the stragglers that
    other processes on a shared host cause. JAX dispatch is asynchronous, so each sample waits for
    the result before the clock stops.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        samples.append(time.perf_counter() - start)
    return {"median_s": statistics.median(samples), "samples_s": samples}
