"""Wall-clock timing of compiled JAX programs, in rounds."""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any, Callable

import jax
import numpy as np
from tqdm import tqdm

Units = dict[str, dict[str, Callable[[], Any]]]


def time_rounds(units: Units, rounds: int, warmup: int = 2, seed: int | None = None) -> dict:
    """Every program of every unit once per round; returns {"samples_s": {program: [s per round]},
    "order": [[unit, ...] per round]}.

    Units take turns within a round, so the drift of a shared machine hits each round's units alike
    and ratios between units of one round stay meaningful. With a seed the units' order is shuffled
    afresh each round (numpy's default_rng(seed): the same on every process of a multi-process
    measurement, whose collectives must run in the same order everywhere), so no unit always runs
    right after another. Warm-up absorbs compilation and first-touch allocation. JAX dispatch is
    asynchronous, so each sample waits for its result.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    programs = {name: fn for unit in units.values() for name, fn in unit.items()}
    if len(programs) != sum(len(unit) for unit in units.values()):
        raise ValueError("program names must be unique across units")
    # Progress on stderr, shown only on a terminal: a setting with all its E takes minutes.
    bar = tqdm(total=len(programs) * (warmup + rounds), desc="timing", unit="call", disable=None, leave=False,
               file=sys.stderr)
    for fn in programs.values():
        for _ in range(warmup):
            jax.block_until_ready(fn())
            bar.update(1)
    rng = None if seed is None else np.random.default_rng(seed)
    samples: dict[str, list[float]] = {name: [] for name in programs}
    order = []
    for _ in range(rounds):
        names = list(units)
        if rng is not None:
            names = [names[i] for i in rng.permutation(len(names))]
        order.append(names)
        for unit in names:
            for name, fn in units[unit].items():
                start = time.perf_counter()
                jax.block_until_ready(fn())
                samples[name].append(time.perf_counter() - start)
                bar.update(1)
    bar.close()
    return {"samples_s": samples, "order": order}


def time_round_robin(programs: dict[str, Callable[[], Any]], warmup: int = 2, repeats: int = 5) -> dict[str, dict]:
    """Median wall time of each zero-argument program, the programs taking turns in a fixed order
    (A B C A B C ...); the median resists stragglers."""
    timed = time_rounds({name: {name: fn} for name, fn in programs.items()}, repeats, warmup)["samples_s"]
    return {name: {"median_s": statistics.median(s), "samples_s": s} for name, s in timed.items()}


def time_fn(fn: Callable[..., Any], *args: Any, warmup: int = 2, repeats: int = 5) -> dict:
    """Median wall time of `fn(*args)` alone."""
    return time_round_robin({"fn": lambda: fn(*args)}, warmup, repeats)["fn"]
