"""The measured optimum with its uncertainty, and the verdict on a predicted best E.

A bootstrap over rounds (theory.rounds.Rounds.resample: whole rounds when paired) gives, per E, the
probability that its median is the lowest. The tied set holds the fastest E (lowest median) and
every E whose median ratio to it has a two-sided percentile interval at the given confidence that
still contains 1 (i.e. the lower end is <= 1): those cannot be told apart from the fastest. With
paired rounds both medians come from the same resampled rounds, so a drift shared by a round
cancels in the comparison.

The same ratios give every E's `slowdown` against the fastest (median ratio - 1 with that interval):
a number that moves a little between reruns where the verdict word, a threshold on it, can flip
(the main job's d = 128 setting: the law's E = 4 against a measured fastest E = 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.errors import InputError
from theory.rounds import Rounds

VERDICTS = ("agree", "consistent", "disagree")


@dataclass(frozen=True)
class MeasuredOptimum:
    fastest: int
    p_fastest: dict[int, float]
    tied_set: tuple[int, ...]
    paired: bool
    slowdown: dict[int, tuple[float, float, float]]  # E -> (median ratio to the fastest - 1, interval lo, hi)

    def to_json(self) -> dict:
        return {"measured_best_e": self.fastest, "p_fastest": {str(e): p for e, p in self.p_fastest.items()},
                "tied_set": list(self.tied_set), "paired": self.paired,
                "slowdown": {str(e): list(v) for e, v in self.slowdown.items()}}


def measured_optimum(rounds: Rounds, *, bootstrap: int = 1000, confidence: float = 0.95,
                     seed: int = 0) -> MeasuredOptimum:
    if bootstrap < 1:
        raise InputError(f"the measured optimum needs bootstrap >= 1 replicates, got {bootstrap}")
    if not (0.0 < confidence < 1.0):
        raise InputError(f"confidence must be in (0, 1), got {confidence}")
    medians = rounds.medians()
    best = int(np.argmin(medians))
    rng = np.random.default_rng(seed)
    replicates = np.stack([np.nanmedian(rounds.resample(rng), axis=0) for _ in range(bootstrap)])
    wins = np.bincount(np.argmin(replicates, axis=1), minlength=rounds.experts.size) / bootstrap
    tail = (1.0 - confidence) / 2.0
    ratio_low, ratio_high = np.quantile(replicates / replicates[:, [best]], [tail, 1.0 - tail], axis=0)
    tied = tuple(int(e) for e, low in zip(rounds.experts, ratio_low) if low <= 1.0)
    slowdown = {int(e): (float(m / medians[best] - 1.0), float(lo - 1.0), float(hi - 1.0))
                for e, m, lo, hi in zip(rounds.experts, medians, ratio_low, ratio_high)}
    return MeasuredOptimum(fastest=int(rounds.experts[best]),
                           p_fastest={int(e): float(p) for e, p in zip(rounds.experts, wins)},
                           tied_set=tied, paired=rounds.paired, slowdown=slowdown)


def verdict(predicted: int | None, optimum: MeasuredOptimum) -> str:
    """agree: predicted is the fastest and nothing ties with it; consistent: predicted is in the
    tied set; disagree: outside it (or no prediction)."""
    if predicted == optimum.fastest and optimum.tied_set == (optimum.fastest,):
        return "agree"
    if predicted in optimum.tied_set:
        return "consistent"
    return "disagree"
