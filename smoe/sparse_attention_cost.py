"""Analytic forward FLOPs of sparse attention (smoe.models.sparse_attention), jax-free.

Same units and convention as smoe.measure.analysis: FLOPs = 2 x MACs, and a score matrix counts
every entry the hardware computes (the causal mask is applied after a dense matmul). So dense and
`mask` attention score seq keys per query, `gather` min(k, seq), `block` its n selected blocks of B
keys; the indexer scores every (query, key) pair with H_I heads of width d_I. The recall metric's
dense attention (a training-time metric) is not counted.
"""

from __future__ import annotations

from smoe.config import ModelConfig


def attended_keys(mode: str, seq: int, topk: int, block: int) -> int:
    """Keys each query's main attention scores and weighs, per mode."""
    if mode == "gather":
        return min(topk, seq)
    if mode == "block":
        return min(max(1, topk // block), seq // block) * block
    return seq


def attention_terms(prefix: str, tokens: int, seq: int, width: int, layers: int, keys: int) -> dict[str, float]:
    """QK^T scores and the probability-weighted values over `keys` keys per query."""
    return {f"{prefix}attention_scores": layers * 2.0 * tokens * keys * width,
            f"{prefix}attention_values": layers * 2.0 * tokens * keys * width}


def indexer_terms(prefix: str, tokens: int, seq: int, width: int, layers: int, heads: int,
                  dim: int) -> dict[str, float]:
    return {
        # q_I (H_I d_I), the shared key (d_I) and the head weights (H_I) from each token
        f"{prefix}indexer_proj": layers * 2.0 * tokens * width * (heads * dim + dim + heads),
        f"{prefix}indexer_scores": layers * 2.0 * tokens * seq * heads * dim,
        f"{prefix}indexer_weighting": layers * 2.0 * tokens * seq * heads,
    }


def sparse_attention_terms(cfg: ModelConfig, batch: int) -> dict[str, float]:
    """The terms sparse attention changes or adds, named as in analytic_flop_terms; merged over
    those (`terms | sparse_attention_terms(cfg, batch)`), they give the sparse model's count."""
    if cfg.attention != "indexer":
        return {}
    t = cfg.seq_len
    if cfg.kind == "dense":
        places = {"": (batch * t, t, cfg.d_model, cfg.n_layers, 1)}
    else:
        s = t // cfg.shorten
        places = {}
        if cfg.attention_in in ("all", "pre"):
            places["pre_"] = (batch * t, t, cfg.d_model, cfg.pre_layers, 1)
        if cfg.attention_in in ("all", "experts"):
            places["experts_"] = (batch * s, s, cfg.expert_width, cfg.expert_layers, cfg.n_experts)
    terms = {}
    for prefix, (tokens, seq, width, layers, copies) in places.items():
        keys = attended_keys(cfg.attention_mode, seq, cfg.attention_topk, cfg.attention_block)
        place_terms = (attention_terms(prefix, tokens, seq, width, layers, keys)
                       | indexer_terms(prefix, tokens, seq, width, layers, cfg.indexer_heads, cfg.indexer_dim))
        terms |= {name: copies * flops for name, flops in place_terms.items()}
    return terms
