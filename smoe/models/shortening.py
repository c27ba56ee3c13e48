"""Causal sequence shortening and upsampling (Hourglass, Nawrot et al. 2021).

Shift right by r-1, then mean-pool groups of r: shortened token j summarises x[j*r-r+1 .. j*r].
Upsampling repeats token j over positions j*r .. j*r+r-1, each >= j*r, so no position ever sees a
later token and the language model stays causal.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def pool_causal(x_btd: jax.Array, r: int) -> jax.Array:
    if r == 1:
        return x_btd
    b, t, d = x_btd.shape
    shifted_btd = jnp.pad(x_btd, ((0, 0), (r - 1, 0), (0, 0)))[:, :t]
    return shifted_btd.reshape(b, t // r, r, d).mean(axis=2)


def upsample(x_bsd: jax.Array, r: int) -> jax.Array:
    return x_bsd if r == 1 else jnp.repeat(x_bsd, r, axis=1)
