"""Measured optimum, tied set and verdict; paired rounds cancel a drifting timer."""

import numpy as np
import pytest

from theory import InputError
from theory.overhead_laws import fit_overhead_laws, law_value
from theory.rounds import paired_rounds, unpaired_rounds
from theory.verdict import measured_optimum, verdict

E = np.array([1, 2, 4, 8, 16, 32])
TRUTH = {"const": 0.05, "inv_e": 0.4, "alpha": 1.5e-4}  # S(8) = 0.1096 s; S(16) is 3.5 % slower
DENSE = 0.08


def _optimum(samples, paired=True):
    rounds = paired_rounds(E, samples) if paired else unpaired_rounds(dict(zip(E.tolist(), samples.T)))
    return measured_optimum(rounds, bootstrap=400, seed=0)


def test_clear_winner_agrees_and_near_tie_is_consistent():
    rng = np.random.default_rng(0)
    clear = law_value(TRUTH, E)[None, :] * (1 + 0.01 * rng.standard_normal((20, E.size)))
    opt = _optimum(clear)
    assert opt.fastest == 8 and opt.tied_set == (8,) and opt.p_fastest[8] > 0.95
    assert sum(opt.p_fastest.values()) == pytest.approx(1.0)
    assert verdict(8, opt) == "agree" and verdict(16, opt) == "disagree" and verdict(None, opt) == "disagree"
    # E=16 is 3.5 % slower by construction; 1 % noise per sample, 20 rounds
    truth_16 = law_value(TRUTH, [16])[0] / law_value(TRUTH, [8])[0] - 1
    point, low, high = opt.slowdown[16]
    assert low < truth_16 < high and 0 < low and abs(point - truth_16) < 0.01
    assert opt.slowdown[8] == (0.0, 0.0, 0.0)
    tie = clear.copy()
    tie[:, 4] = tie[:, 3] * (1 + 0.002 * rng.standard_normal(20))  # E=16 equal to E=8 up to noise
    opt = _optimum(tie)
    assert set(opt.tied_set) == {8, 16}
    assert verdict(8, opt) == "consistent" and verdict(16, opt) == "consistent" and verdict(4, opt) == "disagree"
    tied_slowdown = opt.slowdown[16 if opt.fastest == 8 else 8]
    assert tied_slowdown[1] <= 0 < tied_slowdown[2] and abs(tied_slowdown[0]) < 0.005


def test_pairing_resolves_what_unpaired_noise_cannot():
    rng = np.random.default_rng(1)
    speed = 1 + 0.3 * rng.random((20, 1))  # each round is 0-30 % slower as a whole
    samples = law_value(TRUTH, E)[None, :] * speed * (1 + 0.005 * rng.standard_normal((20, E.size)))
    assert _optimum(samples, paired=True).tied_set == (8,)
    assert len(_optimum(samples, paired=False).tied_set) > 1


def _run(rng, drift, design):
    """Timings of every E and the dense baseline; the timer speeds up from (1 + drift)x to 1x over the run
    (a neighbour's job finishing).

    round_robin: each round times dense and every E in a fresh shuffled order (paired);
    sequential: E after E, each in its own block of rounds (today's per-point sweep, unpaired).
    """
    n_rounds, truths = 20, np.append(law_value(TRUTH, E), DENSE)
    slots = n_rounds * truths.size
    times = np.empty((n_rounds, truths.size))
    for r in range(n_rounds):
        order = rng.permutation(truths.size)
        for position, j in enumerate(order):
            t = r * truths.size + position if design == "round_robin" else j * n_rounds + r
            times[r, j] = truths[j] * (1 + drift * (1 - t / (slots - 1))) * (1 + 0.02 * rng.standard_normal())
    if design == "round_robin":
        return paired_rounds(E, times[:, :-1], dense=times[:, -1])
    return unpaired_rounds(dict(zip(E.tolist(), times[:, :-1].T)))


def _outcome(rounds):
    fits = fit_overhead_laws(rounds, regime="work", bootstrap=0, candidates=E)
    opt = measured_optimum(rounds, bootstrap=400, seed=0)
    return verdict(fits.fit.e_opt_integer, opt), fits.fit.e_opt_integer, opt.fastest, opt.tied_set


@pytest.mark.parametrize("seed", range(3))
def test_pairing_cancels_a_40_percent_drift(seed):
    steady = _outcome(_run(np.random.default_rng(seed), 0.0, "round_robin"))
    assert steady == ("agree", 8, 8, (8,))
    drifting = _run(np.random.default_rng(seed), 0.4, "round_robin")
    assert drifting.drift_cv > 0.08  # the dense baseline itself drifted
    assert _outcome(drifting) == steady
    # The same drift with E timed one after another, unpaired, moves the measured optimum to E=16
    # (E=16 is timed after E=8 on a faster machine) or ties it with E=8.
    sequential = _outcome(_run(np.random.default_rng(seed), 0.4, "sequential"))
    assert sequential != steady and 16 in sequential[3], sequential


def test_rounds_validation_and_paired_normalisation():
    samples = np.array([[2.0, 4.0], [3.0, 6.0]])
    rounds = paired_rounds([1, 2], samples, dense=[1.0, 1.5])
    assert rounds.samples.tolist() == [[2.5, 5.0], [2.5, 5.0]]  # sample / dense * median(dense)
    assert rounds.drift_cv == pytest.approx(np.std([1.0, 1.5], ddof=1) / 1.25)
    with pytest.raises(InputError, match="dense must hold one time per round"):
        paired_rounds([1, 2], samples, dense=[1.0])
    with pytest.raises(InputError, match="paired samples must be finite"):
        paired_rounds([1, 2], [[1.0, np.nan]])
    with pytest.raises(InputError, match="ascending"):
        paired_rounds([2, 1], samples)
    with pytest.raises(InputError, match="bootstrap >= 1"):
        measured_optimum(rounds, bootstrap=0)
