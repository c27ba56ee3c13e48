"""Wall-clock timing of compiled JAX programs."""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any, Callable

import jax
from tqdm import tqdm


def time_round_robin(programs: dict[str, Callable[[], Any]], warmup: int = 2, repeats: int = 5) -> dict[str, dict]:
    """Median wall time of each zero-argument program, the programs taking turns.

    Taking turns (A B C A B C ...) spreads the drift of a shared machine over every program alike, so
    ratios between them stay meaningful. Warm-up absorbs compilation and first-touch allocation; the
    median resists stragglers. JAX dispatch is asynchronous, so each sample waits for its result.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    # Progress on stderr, shown only on a terminal: a point with baselines takes about a minute.
    bar = tqdm(total=len(programs) * (warmup + repeats), desc="timing", unit="call", disable=None, leave=False,
               file=sys.stderr)
    with bar:
        for fn in programs.values():
            for _ in range(warmup):
                jax.block_until_ready(fn())
                bar.update(1)
        samples: dict[str, list[float]] = {name: [] for name in programs}
        for _ in range(repeats):
            for name, fn in programs.items():
                start = time.perf_counter()
                jax.block_until_ready(fn())
                samples[name].append(time.perf_counter() - start)
                bar.update(1)
    return {name: {"median_s": statistics.median(s), "samples_s": s} for name, s in samples.items()}


def time_fn(fn: Callable[..., Any], *args: Any, warmup: int = 2, repeats: int = 5) -> dict:
    """Median wall time of `fn(*args)` alone."""
    return time_round_robin({"fn": lambda: fn(*args)}, warmup, repeats)["fn"]
