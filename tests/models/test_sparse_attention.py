"""Sparse attention: the indexer against its float64 loop, every mode against the mask oracle and,
with k >= t, against dense attention; the full model against the dense model it extends."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from smoe import sharding
from smoe.config import MeshConfig
from smoe.models import reference
from smoe.models import sparse_attention as sa
from smoe.models.layers import causal_attention, split_heads
from smoe.models.lm import lm_loss, make_model
from tests.models.helpers import lm_logits, tiny, tokens

TOL = dict(rtol=2e-4, atol=2e-5)
T, D, HEADS = 16, 32, 2


def _inputs(seed: int = 0, batch: int = 2):
    rng = np.random.default_rng(seed)
    h = jnp.asarray(rng.standard_normal((batch, T, D)), jnp.float32)
    w_qkv = jnp.asarray(0.3 * rng.standard_normal((D, 3 * D)), jnp.float32)
    w_o = jnp.asarray(0.3 * rng.standard_normal((D, D)), jnp.float32)
    iw = sa.IndexerParams(D, 4, 8, rng).weights()
    # larger than the init scale so index scores spread out and the selection is not decided by ties
    iw = sa.IndexerWeights(*(10 * a for a in iw))
    return h, w_qkv, w_o, iw


def _spec(mode: str, topk: int, block: int = 4) -> sa.SparseSpec:
    return sa.SparseSpec(topk=topk, mode=mode, block=block, heads=4, dim=8)


# measured as evaluation runs it, so the stats carry the recall too
_attend = jax.jit(functools.partial(sa.indexed_attention, measure=True), static_argnums=(4, 5))


def test_indexer_scores_match_loop_reference():
    h, _, _, iw = _inputs()
    fast = np.asarray(jax.jit(sa.indexer_scores, static_argnums=(2, 3))(h, iw, 4, 8))
    for row, h_td in zip(fast, np.asarray(h)):
        slow = reference.indexer_scores(h_td, *iw, heads=4, dim=8)
        causal = np.isfinite(slow)
        np.testing.assert_array_equal(np.isfinite(row), causal)
        np.testing.assert_allclose(row[causal], slow[causal], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["mask", "gather", "block", "dense"])
@pytest.mark.parametrize("topk", [T, 4 * T])
def test_every_mode_is_dense_attention_when_k_covers_the_sequence(mode, topk):
    h, w_qkv, w_o, iw = _inputs()
    out, stats = _attend(h, w_qkv, w_o, iw, HEADS, _spec(mode, topk))
    np.testing.assert_allclose(np.asarray(out), np.asarray(causal_attention(h, w_qkv, w_o, HEADS)), **TOL)
    np.testing.assert_allclose(np.asarray(stats["recall"]), 1.0)


@pytest.mark.parametrize("topk", [1, 3, 5, 8])
def test_mask_mode_matches_loop_reference_on_the_selected_keys(topk):
    h, w_qkv, w_o, iw = _inputs(seed=1)
    out, _ = _attend(h, w_qkv, w_o, iw, HEADS, _spec("mask", topk))
    for row_out, h_td in zip(np.asarray(out), np.asarray(h)):
        scores = reference.indexer_scores(h_td, *iw, heads=4, dim=8)
        keys = [np.argsort(-scores[i], kind="stable")[:min(topk, i + 1)] for i in range(T)]
        slow = reference.attention(np.asarray(h_td, np.float64), np.asarray(w_qkv, np.float64),
                                   np.asarray(w_o, np.float64), HEADS, keys=keys)
        np.testing.assert_allclose(row_out, slow, **TOL)


@pytest.mark.parametrize("topk", [1, 3, 5, 8, 12])
def test_gather_equals_mask_for_any_k(topk):
    h, w_qkv, w_o, iw = _inputs(seed=2)
    mask_out, mask_stats = _attend(h, w_qkv, w_o, iw, HEADS, _spec("mask", topk))
    gather_out, gather_stats = _attend(h, w_qkv, w_o, iw, HEADS, _spec("gather", topk))
    np.testing.assert_allclose(np.asarray(gather_out), np.asarray(mask_out), **TOL)
    for name in ("kl", "recall"):
        np.testing.assert_allclose(np.asarray(gather_stats[name]), np.asarray(mask_stats[name]), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("topk,block", [(4, 4), (8, 4), (4, 2), (2, 2), (8, 8)])
def test_block_equals_mask_on_the_block_selection(topk, block):
    """Block mode's selection, written out as a token mask, gives the same attention through the oracle."""
    h, w_qkv, w_o, iw = _inputs(seed=3)
    out, _ = _attend(h, w_qkv, w_o, iw, HEADS, _spec("block", topk, block))
    scores = sa.indexer_scores(h, iw, 4, 8)
    idx, valid = sa.select_blocks(scores, topk, block)
    allowed = sa.block_selection_mask(idx, valid, block, T)
    assert int(allowed.sum(axis=-1).max()) <= topk  # the block selection really is sparse
    q, k, v = split_heads(h, w_qkv, HEADS)
    mask_out, _ = sa.attend_mask(q, k, v, allowed)
    np.testing.assert_allclose(np.asarray(out), np.asarray(mask_out.reshape(h.shape) @ w_o), **TOL)


def test_indexer_kl_and_recall_match_numpy():
    h, w_qkv, w_o, iw = _inputs(seed=4)
    topk = 4
    _, stats = _attend(h, w_qkv, w_o, iw, HEADS, _spec("dense", topk))
    q, k, _ = (np.asarray(a, np.float64) for a in split_heads(h, w_qkv, HEADS))
    for b in range(h.shape[0]):
        scores = reference.indexer_scores(np.asarray(h[b]), *iw, heads=4, dim=8)
        kl, hits, counted = 0.0, 0, 0
        for i in range(T):
            logits = np.einsum("hk,shk->hs", q[b, i], k[b, :i + 1]) / math.sqrt(q.shape[-1])
            probs = np.exp(logits - logits.max(axis=1, keepdims=True))
            p = (probs / probs.sum(axis=1, keepdims=True)).sum(axis=0)
            p /= p.sum()
            log_q = scores[i, :i + 1] - np.log(np.sum(np.exp(scores[i, :i + 1] - scores[i, :i + 1].max()))) \
                - scores[i, :i + 1].max()
            kl += float(np.sum(p * (np.log(p) - log_q)))
            oracle = set(np.argsort(-p, kind="stable")[:topk])
            chosen = set(np.argsort(-scores[i, :i + 1], kind="stable")[:topk])
            hits, counted = hits + len(oracle & chosen), counted + len(oracle)
        np.testing.assert_allclose(float(stats["kl"][b]), kl / T, rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(float(stats["recall"][b]), hits / counted, rtol=1e-6)


@pytest.mark.parametrize("kind,attention_in,mode", [("dense", "all", "gather"), ("sectional", "all", "mask"),
                                                     ("sectional", "all", "block"), ("sectional", "pre", "gather"),
                                                     ("sectional", "experts", "gather")])
def test_model_with_k_covering_the_sequence_is_the_dense_model(kind, attention_in, mode):
    """The indexed model given the dense model's weights (all but the indexers) computes the same logits."""
    dense_cfg = tiny(kind=kind)
    sparse_cfg = dataclasses.replace(dense_cfg, attention="indexer", attention_in=attention_in, attention_mode=mode,
                                     attention_topk=dense_cfg.seq_len, attention_block=4)
    window = jnp.asarray(tokens(dense_cfg, batch=2)[:, :-1])
    dense_model, sparse_model = make_model(dense_cfg, seed=5), make_model(sparse_cfg, seed=6)
    nnx.update(sparse_model, nnx.state(dense_model, nnx.Param))
    dense, sparse = (np.asarray(lm_logits(model, window)) for model in (dense_model, sparse_model))
    np.testing.assert_allclose(sparse, dense, **TOL)


@pytest.mark.parametrize("mode", ["gather", "block"])
def test_sparse_model_is_causal(mode):
    cfg = tiny(attention="indexer", attention_mode=mode, attention_topk=4, attention_block=4)
    model = make_model(cfg, seed=6)
    window = tokens(cfg, batch=1)[:, :-1]
    changed, t = window.copy(), 9
    changed[0, t] = (changed[0, t] + 1) % cfg.vocab_size
    before, after = (np.asarray(lm_logits(model, jnp.asarray(w))) for w in (window, changed))
    np.testing.assert_array_equal(after[:, :t], before[:, :t])
    assert not np.allclose(after[:, t:], before[:, t:]), "changing a token must change some later output"


@pytest.mark.parametrize("mode,mesh_shape", [("gather", (2, 4)), ("block", (1, 8))])
def test_sharded_loss_and_grads_equal_single_device(mode, mesh_shape):
    """Sectional with indexers in the pre-expert block and in the experts (inside the shard_map)."""
    cfg = tiny(n_layers=2, n_experts=8, expert_heads=1, attention="indexer", attention_mode=mode,
               attention_topk=4, attention_block=4)
    graphdef, state = nnx.split(make_model(cfg, seed=7), nnx.Param)
    loss_and_grad = jax.value_and_grad(lambda p, w: lm_loss(nnx.merge(graphdef, p), w)[0])
    window = tokens(cfg, batch=8)
    loss_ref, grads_ref = jax.jit(loss_and_grad)(nnx.to_pure_dict(state), window)
    mesh = sharding.make_mesh(MeshConfig(*mesh_shape))
    params = jax.device_put(nnx.to_pure_dict(state), sharding.param_shardings(state, mesh))
    with jax.set_mesh(mesh):
        loss, grads = jax.jit(loss_and_grad)(params, jax.device_put(window, sharding.batch_sharding(mesh)))
    np.testing.assert_allclose(float(loss), float(loss_ref), rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-7),
                 grads, grads_ref)


def _selected_sets(scores_ts, k):
    idx, valid = sa.select_topk(scores_ts[None], k)
    return [set(np.asarray(i)[np.asarray(v)].tolist()) for i, v in zip(idx[0], valid[0])]


@pytest.mark.parametrize("k,sinks", [(4, 1), (6, 2), (3, 0)])
def test_window_baseline_selects_the_sinks_and_the_most_recent_keys(k, sinks):
    for t, chosen in enumerate(_selected_sets(sa.window_scores(T, sinks), k)):
        sink_set = set(range(min(sinks, t + 1)))
        later = [s for s in range(sinks, t + 1)]
        recent = later[len(later) - (min(k, t + 1) - len(sink_set)):]
        assert chosen == sink_set | set(recent), (t, chosen)


def test_random_baseline_selects_k_distinct_past_keys_including_the_query():
    for t, chosen in enumerate(_selected_sets(sa.random_scores(T), 5)):
        assert len(chosen) == min(5, t + 1) and t in chosen and max(chosen) <= t


@pytest.mark.parametrize("select", ["window", "random"])
def test_baselines_run_in_every_mode_and_gather_equals_mask(select):
    h, w_qkv, w_o, iw = _inputs(seed=5)
    spec = lambda mode: dataclasses.replace(_spec(mode, 8), select=select, sinks=2)  # noqa: E731
    mask_out, mask_stats = _attend(h, w_qkv, w_o, iw, HEADS, spec("mask"))
    gather_out, gather_stats = _attend(h, w_qkv, w_o, iw, HEADS, spec("gather"))
    np.testing.assert_allclose(np.asarray(gather_out), np.asarray(mask_out), **TOL)
    np.testing.assert_allclose(np.asarray(gather_stats["recall"]), np.asarray(mask_stats["recall"]), rtol=1e-6)
    block_out, _ = _attend(h, w_qkv, w_o, iw, HEADS, spec("block"))
    assert np.all(np.isfinite(np.asarray(block_out)))
    indexer_out, _ = _attend(h, w_qkv, w_o, iw, HEADS, _spec("mask", 8))
    assert not np.allclose(np.asarray(mask_out), np.asarray(indexer_out))  # the baseline really chose differently
