"""Batches: pure functions of (seed, step), windows in range, eval windows disjoint."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smoe.data.batches import bits_per_byte, eval_batches, train_batch
from smoe.errors import UserError

# Distinct values make every window identify its own start offset.
TOKENS = (np.arange(10_000) % 251).astype(np.uint8)
RAMP = np.arange(10_000, dtype=np.int64)


def test_train_batch_same_seed_step_same_batch():
    a = train_batch(TOKENS, step=7, batch=8, seq_len=32, seed=3)
    b = train_batch(TOKENS.copy(), step=7, batch=8, seq_len=32, seed=3)
    assert a.dtype == np.int32 and a.shape == (8, 33)
    np.testing.assert_array_equal(a, b)


def test_train_batch_differs_across_steps_and_seeds():
    base = train_batch(TOKENS, step=0, batch=8, seq_len=32, seed=0)
    assert not np.array_equal(base, train_batch(TOKENS, step=1, batch=8, seq_len=32, seed=0))
    assert not np.array_equal(base, train_batch(TOKENS, step=0, batch=8, seq_len=32, seed=1))


def test_train_windows_are_contiguous_and_in_range():
    for step in range(50):
        windows = train_batch(RAMP, step=step, batch=16, seq_len=64, seed=0)
        assert windows.min() >= 0 and windows.max() < RAMP.size
        np.testing.assert_array_equal(np.diff(windows, axis=1), 1)


def test_train_reaches_the_last_token():
    short = np.arange(10, dtype=np.int64)
    starts = {int(train_batch(short, s, 4, 8, 0)[i, 0]) for s in range(50) for i in range(4)}
    assert starts == {0, 1}


def test_eval_batches_disjoint_in_order_and_capped():
    batches = list(eval_batches(RAMP, batch=4, seq_len=99, max_batches=None))
    assert len(batches) == 10_000 // (4 * 100)
    flat = np.concatenate([b.reshape(-1) for b in batches])
    np.testing.assert_array_equal(flat, np.arange(flat.size))  # from the start, no overlap or gap
    assert all(b.shape == (4, 100) and b.dtype == np.int32 for b in batches)
    assert len(list(eval_batches(RAMP, 4, 99, max_batches=3))) == 3
    again = list(eval_batches(RAMP, 4, 99, max_batches=3))
    assert all(np.array_equal(x, y) for x, y in zip(batches, again))


def test_eval_too_small_raises_eagerly():
    with pytest.raises(UserError, match="eval batch"):
        eval_batches(RAMP[:100], batch=4, seq_len=30)


@pytest.mark.parametrize("kwargs", [dict(seq_len=10_000), dict(seq_len=0), dict(batch=0), dict(step=-1)])
def test_bad_sizes_are_user_errors(kwargs):
    args = dict(tokens=TOKENS, step=0, batch=2, seq_len=8, seed=0) | kwargs
    with pytest.raises(UserError):
        train_batch(**args)


def test_bits_per_byte():
    assert bits_per_byte(math.log(256)) == pytest.approx(8.0)
    assert bits_per_byte(math.log(2)) == pytest.approx(1.0)
