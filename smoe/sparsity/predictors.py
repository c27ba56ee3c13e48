"""Importance predictors: two-layer MLPs fitted with optax on min-max normalised inputs and targets.

ShadowLLM-style: one MLP on one early representation predicts every layer's head and neuron scores.
DejaVu-style: one MLP per layer on that layer's own input. Quality is the mean per-sample Spearman rho
on a held-out 20 %, for heads and neurons separately (ShadowLLM `emnlp_activation_predictor.py`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.stats import rankdata


def minmax(x: jax.Array) -> jax.Array:
    """Per-sample min-max normalisation over the last axis (a constant row maps to zeros)."""
    lo, hi = jnp.min(x, axis=-1, keepdims=True), jnp.max(x, axis=-1, keepdims=True)
    return (x - lo) / jnp.maximum(hi - lo, 1e-12)


def init_mlp(seed: int, d_in: int, hidden: int, d_out: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"w1": jnp.asarray(rng.standard_normal((d_in, hidden)) / np.sqrt(d_in), jnp.float32),
            "b1": jnp.zeros((hidden,), jnp.float32),
            "w2": jnp.asarray(rng.standard_normal((hidden, d_out)) / np.sqrt(hidden), jnp.float32),
            "b2": jnp.zeros((d_out,), jnp.float32)}


def mlp(params: dict, x_nd: jax.Array) -> jax.Array:
    return jax.nn.relu(minmax(x_nd) @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def fit_mlp(x_nd: np.ndarray, y_nm: np.ndarray, hidden: int, epochs: int = 100, batch: int = 32,
            learning_rate: float = 1e-3, seed: int = 0) -> dict:
    """MSE to the min-max normalised targets; AdamW with a cosine schedule to 0, shuffled mini-batches."""
    n = x_nd.shape[0]
    steps_per_epoch = max(1, -(-n // batch))
    tx = optax.adamw(optax.cosine_decay_schedule(learning_rate, epochs * steps_per_epoch))
    params = init_mlp(seed, x_nd.shape[1], hidden, y_nm.shape[1])
    opt_state = tx.init(params)
    x, y = jnp.asarray(x_nd, jnp.float32), minmax(jnp.asarray(y_nm, jnp.float32))

    @jax.jit
    def step(params, opt_state, idx):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean(jnp.square(mlp(p, x[idx]) - y[idx])))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(n)
        # Pad the last batch by wrapping so every step has one shape (one compilation).
        order = np.concatenate([order, order[:steps_per_epoch * batch - n]]) if n >= batch else rng.choice(n, batch)
        for i in range(steps_per_epoch):
            params, opt_state, _ = step(params, opt_state, jnp.asarray(order[i * batch:(i + 1) * batch]))
    return params


def spearman(pred_nm: np.ndarray, target_nm: np.ndarray) -> float:
    """Mean over samples of the rank correlation across units; constant rows carry no ranking and are skipped."""
    p, t = rankdata(pred_nm, axis=1), rankdata(target_nm, axis=1)
    p, t = p - p.mean(axis=1, keepdims=True), t - t.mean(axis=1, keepdims=True)
    denom = np.sqrt((p * p).sum(axis=1) * (t * t).sum(axis=1))
    ok = denom > 0
    return float(np.mean((p * t).sum(axis=1)[ok] / denom[ok])) if ok.any() else float("nan")


def split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """80/20 train/held-out split of n samples."""
    order = np.random.default_rng(seed).permutation(n)
    cut = max(1, int(round(0.8 * n)))
    return order[:cut], order[cut:]
