"""Turn per-layer scores into sparse execution: masking (oracle, dense FLOPs) or gathering (real skipping).

Budgets are per layer and per group (`perlayer` style), so every example keeps the same static
number of heads k_h and neurons k_f and the gathered matmuls have static shapes:
W_qkv viewed [d, 3, H, d_h] -> [b, d, 3, k_h, d_h], W_o [H, d_h, d] -> [b, k_h, d_h, d],
W_in [d, F] -> [b, d, k_f], W_out [F, d] -> [b, k_f, d].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from smoe.models.decode import Selection
from smoe.models.layers import BlockWeights


def top_indices(scores_bgn: jax.Array, k: int) -> jax.Array:
    """The k highest-scoring units per example and group, in ascending index order."""
    return jnp.sort(jax.lax.top_k(scores_bgn, k)[1], axis=-1)


def keep_mask(scores_bgn: jax.Array, k: int) -> jax.Array:
    idx = top_indices(scores_bgn, k)
    return jnp.sum(jax.nn.one_hot(idx, scores_bgn.shape[-1], dtype=jnp.float32), axis=-2)


def _gather_group(w: BlockWeights, idx_h, idx_f, n_heads: int) -> BlockWeights:
    """One group, one example: the kept heads' and neurons' slices of the block weights."""
    d = w.w_qkv_dk.shape[0]
    head_dim = w.w_qkv_dk.shape[1] // (3 * n_heads)
    w_qkv = jnp.take(w.w_qkv_dk.reshape(d, 3, n_heads, head_dim), idx_h, axis=2).reshape(d, -1)
    w_o = jnp.take(w.w_o_dd.reshape(n_heads, head_dim, -1), idx_h, axis=0).reshape(-1, w.w_o_dd.shape[-1])
    return BlockWeights(w.norm_attn_d, w_qkv, w_o, w.norm_ffn_d,
                        jnp.take(w.w_in_df, idx_f, axis=1), jnp.take(w.w_out_fd, idx_f, axis=0))


def gather_weights(w_g: BlockWeights, idx_h_bgk, idx_f_bgk, n_heads: int) -> BlockWeights:
    """Per-group weights [g, ...] -> per-group, per-example gathered weights [g, b, ...] (norms stay [g, d])."""
    per_example = jax.vmap(lambda w, ih, jf: _gather_group(w, ih, jf, n_heads), in_axes=(None, 0, 0))
    gathered = jax.vmap(per_example, in_axes=(0, 1, 1))(w_g, idx_h_bgk, idx_f_bgk)
    return gathered._replace(norm_attn_d=w_g.norm_attn_d, norm_ffn_d=w_g.norm_ffn_d)


def select_layer(w_g: BlockWeights, n_heads: int, head_scores_bgh, neuron_scores_bgf, k_h: int, k_f: int,
                 mode: str) -> Selection:
    """A layer's execution keeping k_h heads and k_f neurons per group; all kept -> the dense layer."""
    if k_h == n_heads and k_f == w_g.w_in_df.shape[-1]:
        return Selection(w_g, n_heads, None, None)
    if mode == "mask":
        return Selection(w_g, n_heads, keep_mask(head_scores_bgh, k_h), keep_mask(neuron_scores_bgf, k_f))
    gathered = gather_weights(w_g, top_indices(head_scores_bgh, k_h), top_indices(neuron_scores_bgf, k_f), n_heads)
    return Selection(gathered, k_h, None, None)
