"""Timings as rounds: samples[round, E], optionally paired with the same round's dense baseline.

A *paired* design times every E (and the dense baseline) once per round, so a slow drift of the
machine hits all of a round alike; dividing each sample by its round's dense time and rescaling by
the dense median cancels it. *Unpaired* data (today's per-point records) hold each E's own
repetitions in a column, NaN-padded to the longest; their rows are not rounds, so resampling and
comparisons treat each column on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from theory.errors import InputError


@dataclass(frozen=True)
class Rounds:
    """experts: the distinct E (ascending); samples: seconds, shape (rounds, len(experts)).

    paired: row r of every column was timed in the same round (no NaN allowed then).
    drift_cv: coefficient of variation of the dense baseline across rounds (None when unpaired).
    """

    experts: np.ndarray
    samples: np.ndarray
    paired: bool
    drift_cv: float | None = None

    def __post_init__(self) -> None:
        e = np.asarray(self.experts, dtype=float)
        s = np.asarray(self.samples, dtype=float)
        if e.ndim != 1 or s.ndim != 2 or s.shape[1] != e.size or s.shape[0] == 0:
            raise InputError(f"samples must be (rounds, len(E)) = (r, {e.size}), got {s.shape}")
        if np.any(e < 1) or np.any(e != np.round(e)) or np.unique(e).size != e.size:
            raise InputError(f"E must be distinct integers >= 1, got {e.tolist()}")
        if np.any(np.diff(e) < 0):
            raise InputError(f"E must be in ascending order, got {e.tolist()}")
        finite = np.isfinite(s)
        if self.paired and not finite.all():
            raise InputError("paired samples must be finite in every round; drop the incomplete rounds")
        if np.any(s[finite] <= 0):
            raise InputError("seconds must be > 0; drop the zero or negative samples")
        if np.any(finite.sum(axis=0) == 0):
            raise InputError(f"E = {e[finite.sum(axis=0) == 0].astype(int).tolist()} have no samples")
        object.__setattr__(self, "experts", e.astype(int))
        object.__setattr__(self, "samples", s)

    def medians(self) -> np.ndarray:
        return np.nanmedian(self.samples, axis=0)

    def resample(self, rng: np.random.Generator) -> np.ndarray:
        """One bootstrap replicate of samples: whole rounds when paired, each E's own samples otherwise."""
        if self.paired:
            return self.samples[rng.integers(0, self.samples.shape[0], self.samples.shape[0])]
        out = np.full_like(self.samples, np.nan)
        for j in range(self.experts.size):
            column = self.samples[:, j][np.isfinite(self.samples[:, j])]
            out[: column.size, j] = rng.choice(column, size=column.size, replace=True)
        return out

    def subset(self, keep: np.ndarray) -> Rounds:
        """The columns of the E where keep is True."""
        return Rounds(self.experts[keep], self.samples[:, keep], self.paired, self.drift_cv)


def paired_rounds(experts, samples, dense=None) -> Rounds:
    """Rounds from samples[round, E]; with dense[round], normalise each sample by its round's dense time.

    Normalised sample = sample / dense[round] * median(dense): the units stay seconds and a drift
    that scales a whole round cancels.
    """
    s = np.asarray(samples, dtype=float)
    if dense is None:
        return Rounds(np.asarray(experts), s, paired=True)
    d = np.asarray(dense, dtype=float)
    if d.shape != (s.shape[0],):
        raise InputError(f"dense must hold one time per round ({s.shape[0]}), got shape {d.shape}")
    if not np.all(np.isfinite(d)) or np.any(d <= 0):
        raise InputError("dense times must be finite and > 0 in every round")
    drift_cv = float(np.std(d, ddof=1) / np.mean(d)) if d.size > 1 else 0.0
    return Rounds(np.asarray(experts), s / d[:, None] * np.median(d), paired=True, drift_cv=drift_cv)


def unpaired_rounds(per_expert: Mapping[int, Iterable[float]]) -> Rounds:
    """Each E's repetitions as its own column (NaN-padded); not paired across E."""
    if not per_expert:
        raise InputError("no timings: need samples for at least one E")
    experts = sorted(int(e) for e in per_expert)
    columns = [np.asarray(list(per_expert[e]), dtype=float) for e in experts]
    out = np.full((max(c.size for c in columns), len(experts)), np.nan)
    for j, column in enumerate(columns):
        out[: column.size, j] = column
    return Rounds(np.asarray(experts), out, paired=False)


def rounds_from_measurements(experts, seconds) -> Rounds:
    """Unpaired rounds from one (E, seconds) record per repetition."""
    grouped: dict[int, list[float]] = {}
    for e, s in zip(np.asarray(experts).tolist(), np.asarray(seconds).tolist()):
        grouped.setdefault(int(e), []).append(float(s))
    return unpaired_rounds(grouped)
