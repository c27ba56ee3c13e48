"""Stateless, deterministic batches of token windows.

A training batch is a pure function of (seed, step), so a run resumed from a checkpoint at step s
sees exactly the batches it would have seen, with no sampler state to save. Each window holds
seq_len + 1 tokens: inputs are window[:, :-1], targets window[:, 1:].
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from smoe.errors import UserError


def train_batch(tokens: np.ndarray, step: int, batch: int, seq_len: int, seed: int) -> np.ndarray:
    """Return int32 windows of shape [batch, seq_len + 1] starting at uniformly random offsets.

    Offsets come from np.random.default_rng([seed, step]): seeding with the pair, rather than
    advancing one generator, makes batch `step` independent of every other step.
    """
    _check_sizes(tokens, batch, seq_len)
    if step < 0 or seed < 0:
        raise UserError(f"seed/step: must be non-negative, got seed={seed}, step={step}")
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, tokens.size - seq_len, size=batch)
    return _gather(tokens, starts, seq_len)


def eval_batches(
    tokens: np.ndarray, batch: int, seq_len: int, max_batches: int | None = None
) -> Iterator[np.ndarray]:
    """Yield fixed, non-overlapping int32 windows [batch, seq_len + 1] from the start of `tokens`.

    Only full batches are yielded so every eval step has one shape (one compilation); the tail
    that does not fill a batch is skipped. `max_batches` caps the count (None: as many as fit).
    Raises UserError at call time, not on first iteration, if not even one batch fits.
    """
    _check_sizes(tokens, batch, seq_len)
    available = tokens.size // ((seq_len + 1) * batch)
    if available == 0:
        raise UserError(
            f"eval batch: {batch} windows of {seq_len + 1} tokens need {batch * (seq_len + 1)} val "
            f"tokens, but there are {tokens.size}; lower the eval batch size or seq_len, or raise val_fraction"
        )
    count = available if max_batches is None else min(available, max_batches)
    return _eval_iter(tokens, batch, seq_len, count)


def bits_per_byte(mean_loss_nats: float) -> float:
    """Convert a mean next-token cross-entropy in nats to bits per byte.

    Tokens are single bytes (see smoe.data.corpus), so the loss per token is already a loss per
    byte; only the change of logarithm base from e to 2 remains.
    """
    return mean_loss_nats / math.log(2)


def _eval_iter(tokens: np.ndarray, batch: int, seq_len: int, count: int) -> Iterator[np.ndarray]:
    window = seq_len + 1
    offsets = np.arange(batch) * window
    for index in range(count):
        yield _gather(tokens, index * batch * window + offsets, seq_len)


def _check_sizes(tokens: np.ndarray, batch: int, seq_len: int) -> None:
    if batch < 1 or seq_len < 1:
        raise UserError(f"batch/seq_len: both must be >= 1, got batch={batch}, seq_len={seq_len}")
    if tokens.ndim != 1 or tokens.size < seq_len + 1:
        raise UserError(
            f"seq_len: {seq_len} needs a 1-D token array of at least {seq_len + 1} tokens, got shape "
            f"{tokens.shape}; lower seq_len or use a larger corpus"
        )


def _gather(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> np.ndarray:
    return tokens[starts[:, None] + np.arange(seq_len + 1)].astype(np.int32)
