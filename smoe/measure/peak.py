"""This machine's matmul throughput, the yardstick for achieved FLOP/s."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from smoe.measure.timing import time_fn


def matmul_peak_flops(n: int = 1024, repeats: int = 5, dtype: str = "float32") -> float:
    """FLOP/s of one n x n x n `jnp.dot` in `dtype` on the first device (2 n^3 FLOPs, median time)."""
    device = jax.local_devices()[0]  # on a cluster, one of this process's own
    rng = np.random.default_rng(0)
    a, b = (jax.device_put(rng.standard_normal((n, n), dtype=np.float32), device).astype(dtype) for _ in range(2))
    timing = time_fn(jax.jit(jnp.dot), a, b, repeats=repeats)
    return 2.0 * n**3 / timing["median_s"]
