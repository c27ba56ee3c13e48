"""Learned sparse attention: a DeepSeek-V3.2-style lightning indexer picks k past keys per query.

Index scores I[t, s] = sum_j w[t, j] * relu(q_I[t, j] . k_I[s]) (H_I heads of width d_I, one key per
token, weights scaled by H_I^-1/2 d_I^-1/2 as in DeepSeek's and MaxText's code), causal, then a static
`lax.top_k`; the selection is shared by all attention heads. Three ways to attend to it, one result:
`mask` (dense scores, the selection as a mask: the oracle), `gather` (only the k selected keys and
values per query are gathered and scored: the FLOPs drop from O(t^2) to O(t k)) and `block` (queries
in blocks of B share a selection of k/B key blocks, so the gather moves blocks instead of rows;
NSA/MoBA-style, see `block_scores`).
`dense` attends to every past key and only runs the indexer for its loss (the warm-up stage).
Baselines with the same k replace the indexer's choice (`select`): a sliding window plus attention
sinks, or a fixed random pattern; `indexer_recall` then measures the baseline's selection.

The indexer reads its input through `stop_gradient` and the attention target through
`stop_gradient`, and the selection enters the main attention only as integer indices, so the LM
loss never reaches the indexer and the indexer's KL never reaches the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from smoe.config import ModelConfig
from smoe.models.expert_parallel import batch_local
from smoe.models.layers import INIT_STD, BlockWeights, attention_probs, ffn, param, rms_norm, split_heads

Stats = dict  # {"kl": [b], and "recall": [b] when measured}: per sequence, so expert-parallel vmaps can carry them


@dataclass(frozen=True)
class SparseSpec:
    topk: int
    mode: str
    block: int
    heads: int
    dim: int
    select: str = "indexer"
    sinks: int = 0


def sparse_spec(cfg: ModelConfig, place: str) -> SparseSpec | None:
    """The spec for blocks at `place` ("dense" model, sectional "pre" or "experts"), None where attention is dense."""
    if cfg.attention != "indexer" or cfg.attention_in not in ("all", place):
        return None
    return SparseSpec(cfg.attention_topk, cfg.attention_mode, cfg.attention_block, cfg.indexer_heads, cfg.indexer_dim,
                      cfg.attention_select, cfg.attention_sinks)


class IndexerWeights(NamedTuple):
    w_q_dn: jax.Array  # n = H_I * d_I
    w_k_dj: jax.Array  # j = d_I
    w_w_dh: jax.Array  # h = H_I


class IndexerParams(nnx.Module):
    def __init__(self, d: int, heads: int, dim: int, rng: np.random.Generator,
                 lead_shape: tuple[int, ...] = (), lead_axes: tuple[str | None, ...] = ()):
        lead, axes = tuple(lead_shape), tuple(lead_axes)
        self.w_q_dn = param(rng, lead + (d, heads * dim), axes + (None, None), INIT_STD)
        self.w_k_dj = param(rng, lead + (d, dim), axes + (None, None), INIT_STD)
        self.w_w_dh = param(rng, lead + (d, heads), axes + (None, None), INIT_STD)

    def weights(self) -> IndexerWeights:
        return IndexerWeights(*(getattr(self, name)[...] for name in IndexerWeights._fields))


def indexer_scores(h_btd: jax.Array, iw: IndexerWeights, heads: int, dim: int) -> jax.Array:
    """I[b, t, s], -inf above the diagonal."""
    b, t, _ = h_btd.shape
    q_bthj = (h_btd @ iw.w_q_dn).reshape(b, t, heads, dim)
    k_bsj = h_btd @ iw.w_k_dj
    w_bth = (h_btd @ iw.w_w_dh) * (heads * dim) ** -0.5
    logits_btsh = jax.nn.relu(jnp.einsum("bthj,bsj->btsh", q_bthj, k_bsj))
    scores_bts = jnp.einsum("btsh,bth->bts", logits_btsh, w_bth)
    return jnp.where(jnp.tril(jnp.ones((t, t), dtype=bool)), scores_bts, -jnp.inf)


def window_scores(t: int, sinks: int) -> jax.Array:
    """Baseline selection scores: the first `sinks` tokens first, then the most recent (a sliding window)."""
    query_t, key_s = jnp.arange(t)[:, None], jnp.arange(t)[None, :]
    recency_ts = jnp.where(key_s < sinks, jnp.inf, (key_s - query_t).astype(jnp.float32))
    return jnp.where(key_s <= query_t, recency_ts, -jnp.inf)


def random_scores(t: int, seed: int = 0) -> jax.Array:
    """Baseline selection scores: a fixed random choice among the past, always keeping the query itself."""
    noise_ts = jax.random.uniform(jax.random.key(seed), (t, t))
    noise_ts = jnp.where(jnp.eye(t, dtype=bool), jnp.inf, noise_ts)
    return jnp.where(jnp.tril(jnp.ones((t, t), dtype=bool)), noise_ts, -jnp.inf)


def selection_scores(scores_bts: jax.Array, spec: SparseSpec) -> jax.Array:
    """What top-k picks from: the indexer's scores, or a baseline pattern with the same k."""
    if spec.select == "window":
        return jnp.broadcast_to(window_scores(scores_bts.shape[1], spec.sinks), scores_bts.shape)
    if spec.select == "random":
        return jnp.broadcast_to(random_scores(scores_bts.shape[1]), scores_bts.shape)
    return scores_bts


def top_k_per_sequence(x_bts: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """`lax.top_k` on each device's own sequences (`batch_local`): on a batch-sharded mesh XLA would
    otherwise all-gather the [b, t, s] scores first."""
    return batch_local(lambda _, x: lax.top_k(x, k), None, x_bts)


def select_topk(scores_bts: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Indices of the k best keys per query; `valid` is False where fewer than k keys are causal."""
    vals_btk, idx_btk = top_k_per_sequence(lax.stop_gradient(scores_bts), min(k, scores_bts.shape[-1]))
    return idx_btk, vals_btk > -jnp.inf


def selection_mask(idx_btk: jax.Array, valid_btk: jax.Array, s: int) -> jax.Array:
    """allowed[b, t, s] from per-query indices (top_k indices are distinct, so `set` never collides)."""
    scatter_row = lambda i_k, v_k: jnp.zeros((s,), bool).at[i_k].set(v_k)  # noqa: E731
    return jax.vmap(jax.vmap(scatter_row))(idx_btk, valid_btk)


def block_scores(scores_bts: jax.Array, block: int) -> jax.Array:
    """Scores of key blocks for each query block: its first query's best index score in the block.

    The first query is the only one every query of the block may depend on, so sharing its choice
    stays causal; the block itself always stays selected (+inf), so each query keeps its local keys.
    """
    b, t, s = scores_bts.shape
    c = t // block
    tiles_bcm = scores_bts[:, ::block, :].reshape(b, c, s // block, block).max(axis=-1)
    return jnp.where(jnp.eye(c, dtype=bool), jnp.inf, tiles_bcm)


def select_blocks(scores_bts: jax.Array, k: int, block: int) -> tuple[jax.Array, jax.Array]:
    return select_topk(block_scores(scores_bts, block), max(1, k // block))


def block_selection_mask(idx_bcn: jax.Array, valid_bcn: jax.Array, block: int, t: int) -> jax.Array:
    """The token-level mask a block selection means: every causal key in every selected block."""
    allowed_bck = selection_mask(idx_bcn, valid_bcn, t // block)
    allowed_bts = jnp.repeat(jnp.repeat(allowed_bck, block, axis=1), block, axis=2)
    return allowed_bts & jnp.tril(jnp.ones((t, t), dtype=bool))


def attend_mask(q_bthk, k_bshk, v_bshk, allowed_bts):
    probs_bhts = attention_probs(q_bthk, k_bshk, allowed_bts[:, None])
    return jnp.einsum("bhts,bshk->bthk", probs_bhts, v_bshk), probs_bhts


def _take_rows(x_bs_, idx_b_):
    """x[b, idx[b, ...]]: rows of each sequence picked by that sequence's indices."""
    return jax.vmap(lambda x, i: x[i])(x_bs_, idx_b_)


def attend_gather(q_bthk, k_bshk, v_bshk, idx_btk, valid_btk):
    """Scores only the k gathered keys per query: [b, h, t, k] instead of [b, h, t, s]."""
    k_btjhk, v_btjhk = _take_rows(k_bshk, idx_btk), _take_rows(v_bshk, idx_btk)
    head_dim = q_bthk.shape[-1]
    scores_bhtj = jnp.einsum("bthk,btjhk->bhtj", q_bthk, k_btjhk) / jnp.sqrt(head_dim).astype(q_bthk.dtype)
    scores_bhtj = jnp.where(valid_btk[:, None], scores_bhtj, jnp.finfo(scores_bhtj.dtype).min)
    probs_bhtj = jax.nn.softmax(scores_bhtj, axis=-1)
    return jnp.einsum("bhtj,btjhk->bthk", probs_bhtj, v_btjhk), probs_bhtj


def _block_key_positions(idx_bcn: jax.Array, block: int) -> jax.Array:
    b, c, n = idx_bcn.shape
    return (idx_bcn[..., None] * block + jnp.arange(block)).reshape(b, c, n * block)


def attend_block(q_bthk, k_bshk, v_bshk, idx_bcn, valid_bcn, block: int):
    """Each query block gathers its n selected key blocks (n*B keys) and attends causally within them."""
    b, t, h, hd = q_bthk.shape
    c, n = idx_bcn.shape[1], idx_bcn.shape[2]
    blocks = lambda x: x.reshape(b, t // block, block, h, hd)  # noqa: E731
    k_bcnBhk = _take_rows(blocks(k_bshk), idx_bcn).reshape(b, c, n * block, h, hd)
    v_bcnBhk = _take_rows(blocks(v_bshk), idx_bcn).reshape(b, c, n * block, h, hd)
    key_pos_bcm = _block_key_positions(idx_bcn, block)
    query_pos_cq = jnp.arange(t).reshape(c, block)
    allowed_bcqm = (jnp.repeat(valid_bcn, block, axis=2)[:, :, None, :]
                    & (key_pos_bcm[:, :, None, :] <= query_pos_cq[None, :, :, None]))
    scores = jnp.einsum("bcqhk,bcmhk->bhcqm", blocks(q_bthk), k_bcnBhk) / jnp.sqrt(hd).astype(q_bthk.dtype)
    scores = jnp.where(allowed_bcqm[:, None], scores, jnp.finfo(scores.dtype).min)
    probs_bhcqm = jax.nn.softmax(scores, axis=-1)
    out = jnp.einsum("bhcqm,bcmhk->bcqhk", probs_bhcqm, v_bcnBhk).reshape(b, t, h, hd)
    return out, probs_bhcqm, allowed_bcqm, key_pos_bcm


def indexer_kl(probs_bh_k: jax.Array, scores_b_k: jax.Array, allowed_b_k: jax.Array) -> jax.Array:
    """Per sequence, mean over queries of KL(p || softmax(I over the allowed keys)), p the head-summed,
    L1-normalised attention (a target: no gradient)."""
    p = lax.stop_gradient(jnp.mean(probs_bh_k, axis=1))
    p = p / jnp.sum(p, axis=-1, keepdims=True)
    log_q = jax.nn.log_softmax(jnp.where(allowed_b_k, scores_b_k, -jnp.inf), axis=-1)
    # 0 log 0 = 0, and masked entries are never evaluated at -inf (their gradient would be NaN)
    log_ratio = jnp.log(jnp.where(p > 0, p, 1.0)) - jnp.where(allowed_b_k, log_q, 0.0)
    terms = jnp.where(allowed_b_k & (p > 0), p * log_ratio, 0.0)
    per_query = jnp.sum(terms, axis=-1)
    return jnp.mean(per_query.reshape(per_query.shape[0], -1), axis=-1)


def indexer_recall(q_bthk, k_bshk, selected_bts: jax.Array, k: int) -> jax.Array:
    """Per sequence: the fraction of the oracle top-k (head-summed dense attention) that was selected."""
    t = q_bthk.shape[1]
    causal = jnp.tril(jnp.ones((t, t), dtype=bool))
    oracle_bts = jnp.sum(attention_probs(lax.stop_gradient(q_bthk), lax.stop_gradient(k_bshk), causal), axis=1)
    vals_btk, idx_btk = top_k_per_sequence(jnp.where(causal, oracle_bts, -1.0), min(k, t))
    counted_btk = vals_btk >= 0
    hits_btk = jnp.take_along_axis(selected_bts, idx_btk, axis=-1) & counted_btk
    return jnp.sum(hits_btk, axis=(1, 2)) / jnp.sum(counted_btk, axis=(1, 2))


def indexed_attention(h_btd: jax.Array, w_qkv_dk: jax.Array, w_o_dd: jax.Array, iw: IndexerWeights,
                      n_heads: int, spec: SparseSpec, measure: bool = False) -> tuple[jax.Array, Stats]:
    """Stats carry the indexer KL; `measure` adds the recall, which needs the dense [t, t] attention
    the gather and block modes exist to avoid, so only evaluation asks for it."""
    b, t, d = h_btd.shape
    q_bthk, k_bthk, v_bthk = split_heads(h_btd, w_qkv_dk, n_heads)
    scores_bts = indexer_scores(lax.stop_gradient(h_btd), iw, spec.heads, spec.dim)
    chooser_bts = selection_scores(scores_bts, spec)
    if spec.mode == "block":
        idx_bcn, valid_bcn = select_blocks(chooser_bts, spec.topk, spec.block)
        out_bthk, probs, allowed, key_pos_bcm = attend_block(q_bthk, k_bthk, v_bthk, idx_bcn, valid_bcn, spec.block)
        c = t // spec.block
        scores_bcqm = jnp.take_along_axis(scores_bts.reshape(b, c, spec.block, t),
                                          jnp.broadcast_to(key_pos_bcm[:, :, None, :], allowed.shape), axis=-1)
        kl = indexer_kl(probs, scores_bcqm, allowed)
        selected = lambda: block_selection_mask(idx_bcn, valid_bcn, spec.block, t)  # noqa: E731
    else:
        idx_btk, valid_btk = select_topk(chooser_bts, spec.topk)
        selected = lambda: selection_mask(idx_btk, valid_btk, t)  # noqa: E731
        if spec.mode == "gather":
            out_bthk, probs = attend_gather(q_bthk, k_bthk, v_bthk, idx_btk, valid_btk)
            kl = indexer_kl(probs, jnp.take_along_axis(scores_bts, idx_btk, axis=-1), valid_btk)
        else:
            allowed_bts = jnp.tril(jnp.ones((t, t), dtype=bool))[None] if spec.mode == "dense" else selected()
            out_bthk, probs = attend_mask(q_bthk, k_bthk, v_bthk, allowed_bts)
            kl = indexer_kl(probs, scores_bts, jnp.broadcast_to(allowed_bts, scores_bts.shape))
    stats = {"kl": kl}
    if measure:
        stats["recall"] = indexer_recall(q_bthk, k_bthk, selected(), spec.topk)
    return out_bthk.reshape(b, t, d) @ w_o_dd, stats


def indexed_block_forward(w: BlockWeights, iw: IndexerWeights, x_btd: jax.Array, n_heads: int,
                          spec: SparseSpec, measure: bool = False) -> tuple[jax.Array, Stats]:
    """`layers.block_forward` with the indexed attention in place of the dense one."""
    attn_btd, stats = indexed_attention(rms_norm(x_btd, w.norm_attn_d), w.w_qkv_dk, w.w_o_dd, iw, n_heads, spec,
                                        measure)
    x_btd = x_btd + attn_btd
    return x_btd + ffn(rms_norm(x_btd, w.norm_ffn_d), w.w_in_df, w.w_out_fd), stats


def indexer_stack(cfg: ModelConfig, place: str, count: int, d: int, rng: np.random.Generator,
                  lead_shape: tuple[int, ...] = (), lead_axes: tuple[str | None, ...] = ()):
    """The indexers for `count` blocks at `place`: an nnx.List, one stacked IndexerParams, or None."""
    spec = sparse_spec(cfg, place)
    if spec is None:
        return None
    if lead_shape:
        return IndexerParams(d, spec.heads, spec.dim, rng, lead_shape, lead_axes)
    return nnx.List([IndexerParams(d, spec.heads, spec.dim, rng) for _ in range(count)])


def sparse_aux(stats_by_layer: dict[int, Stats]) -> dict:
    """Trunk aux from per-layer stats: the indexer KL joins the loss (it only trains the indexer)."""
    aux_loss = jnp.zeros((), jnp.float32)
    metrics = {}
    for layer, stats in stats_by_layer.items():
        aux_loss = aux_loss + jnp.mean(stats["kl"])
        metrics |= {f"layer{layer}/indexer_{name}": jnp.mean(value) for name, value in stats.items()}
    return {"aux_loss": aux_loss, "metrics": metrics}
