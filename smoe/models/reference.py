"""Slow, obviously-correct float64 numpy references: the test oracles for every fast path.

Each one loops the way the math is written (per head, per query, per token, per expert, per slice)
and shares no code with the fast path except the weights it reads.
"""

from __future__ import annotations

import math

import numpy as np

from smoe.config import ModelConfig


def _np(tree):
    return [np.asarray(a, dtype=np.float64) for a in tree]


def rms_norm(x_d: np.ndarray, scale_d: np.ndarray) -> np.ndarray:
    return x_d / math.sqrt(float(np.mean(x_d * x_d)) + 1e-6) * scale_d


def gelu(x: np.ndarray) -> np.ndarray:
    """tanh approximation, the one jax.nn.gelu uses by default."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def attention(x_td: np.ndarray, w_qkv: np.ndarray, w_o: np.ndarray, n_heads: int, keys=None) -> np.ndarray:
    """`keys[i]`, if given, lists the past positions query i may attend to (sparse attention)."""
    t, d = x_td.shape
    hd = d // n_heads
    out = np.zeros((t, d))
    for h in range(n_heads):
        cols = slice(h * hd, (h + 1) * hd)
        q = x_td @ w_qkv[:, :d][:, cols]
        k = x_td @ w_qkv[:, d:2 * d][:, cols]
        v = x_td @ w_qkv[:, 2 * d:][:, cols]
        for i in range(t):
            attended = list(range(i + 1)) if keys is None else sorted(keys[i])
            scores = np.array([q[i] @ k[j] / math.sqrt(hd) for j in attended])
            p = np.exp(scores - scores.max())
            p /= p.sum()
            out[i, cols] = sum(pj * v[j] for pj, j in zip(p, attended))
    return out @ w_o


def indexer_scores(x_td: np.ndarray, w_q: np.ndarray, w_k: np.ndarray, w_w: np.ndarray, heads: int, dim: int):
    """I[t, s] = sum_j w[t, j] relu(q[t, j] . k[s]) for s <= t (weights scaled by (H_I d_I)^-1/2), -inf after."""
    x_td, w_q, w_k, w_w = (np.asarray(a, dtype=np.float64) for a in (x_td, w_q, w_k, w_w))
    t = x_td.shape[0]
    out = np.full((t, t), -np.inf)
    for i in range(t):
        weights = x_td[i] @ w_w / math.sqrt(heads * dim)
        for s in range(i + 1):
            key = x_td[s] @ w_k
            out[i, s] = sum(weights[j] * max(0.0, float(x_td[i] @ w_q[:, j * dim:(j + 1) * dim] @ key))
                            for j in range(heads))
    return out


def block(weights, x_td: np.ndarray, n_heads: int) -> np.ndarray:
    norm_attn, w_qkv, w_o, norm_ffn, w_in, w_out = _np(weights)
    normed = np.stack([rms_norm(row, norm_attn) for row in x_td])
    x_td = x_td + attention(normed, w_qkv, w_o, n_heads)
    normed = np.stack([rms_norm(row, norm_ffn) for row in x_td])
    return x_td + gelu(normed @ w_in) @ w_out


def pool_causal(x_td: np.ndarray, r: int) -> np.ndarray:
    t, d = x_td.shape
    out = np.zeros((t // r, d))
    for j in range(t // r):
        members = [x_td[i] if i >= 0 else np.zeros(d) for i in range(j * r - r + 1, j * r + 1)]
        out[j] = np.mean(members, axis=0)
    return out


def sectional_trunk(trunk, x_btd: np.ndarray, cfg: ModelConfig, expert_block=None) -> np.ndarray:
    """Pre-expert blocks, then each expert e runs its layers on columns [e*w, (e+1)*w) of the shortened
    stream; `expert_block(e, layer, h)` is one of those layers (default: the plain block)."""
    width, r = cfg.expert_width, cfg.shorten
    experts = [np.asarray(a, dtype=np.float64) for a in trunk.experts.weights()]
    if expert_block is None:
        def expert_block(e, layer, h):
            return block([a[e, layer] for a in experts], h, cfg.expert_heads)
    mix = np.asarray(trunk.w_mix_dd[...], dtype=np.float64) if cfg.recombine == "mix" else None
    outputs = []
    for x_td in np.asarray(x_btd, dtype=np.float64):
        for pre in trunk.pre_blocks:
            x_td = block(pre.weights(), x_td, cfg.n_heads)
        short_sd = pool_causal(x_td, r)
        delta_sd = np.zeros_like(short_sd)
        for e in range(cfg.n_experts):
            cols = slice(e * width, (e + 1) * width)
            h = short_sd[:, cols]
            for layer in range(cfg.expert_layers):
                h = expert_block(e, layer, h)
            delta_sd[:, cols] = h - short_sd[:, cols]
        if mix is not None:
            delta_sd = delta_sd + delta_sd @ mix
        outputs.append(x_td + np.stack([delta_sd[i // r] for i in range(x_td.shape[0])]))
    return np.stack(outputs)


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def _expert_outputs(h_sd, probs, choices, capacity, w_in, w_out, out_sd) -> int:
    """Each choice round in token order takes a slot if its expert has one left; returns the drops."""
    used, dropped = [0] * w_in.shape[0], 0
    for k in range(max((len(c) for c in choices), default=0)):
        for si, chosen in enumerate(choices):
            if k >= len(chosen):
                continue
            e = chosen[k]
            if used[e] < capacity:
                used[e] += 1
                out_sd[si] += probs[si, e] * (gelu(h_sd[si] @ w_in[e]) @ w_out[e])
            else:
                dropped += 1
    return dropped


def _weights(block_params, *names):
    return [np.asarray(getattr(block_params, name)[...], dtype=np.float64) for name in names]


def routed_group(h_sd: np.ndarray, w_router, w_in, w_out, cfg: ModelConfig, p: float | None = None, bias=None,
                 w_fallback=None) -> tuple[np.ndarray, np.ndarray, int]:
    """One group (sequence) through a routed FFN over w_router's experts: top_k (p None) or top-p with
    a cap of k_cap (0 = none) ranked by probs + bias; a token whose top-p set would be larger falls
    back to the dense FFN while the group's buffer of ceil(fallback_fraction * s) rows has room.
    Returns (out, fallback per token, dropped choices)."""
    n_experts, s = w_router.shape[1], h_sd.shape[0]
    capacity = max(1, math.ceil(cfg.capacity_factor * cfg.capacity_k * s / n_experts))
    buffer = math.ceil(cfg.fallback_fraction * s)
    probs = _softmax_rows(h_sd @ w_router)
    out, fallback, choices = np.zeros(h_sd.shape), np.zeros(s, bool), []
    for si, prob in enumerate(probs):
        score = prob if bias is None else prob + bias
        ranked = sorted(range(n_experts), key=lambda e, q=score: -q[e])
        if p is None:
            choices.append(ranked[:cfg.top_k])
            continue
        top_p_set = [e for j, e in enumerate(ranked) if j == 0 or sum(prob[ranked[:j]]) <= p]
        cap = cfg.k_cap or n_experts
        if len(top_p_set) > cap and fallback.sum() < buffer:
            fallback[si] = True
            out[si] = gelu(h_sd[si] @ w_fallback[0]) @ w_fallback[1]
            choices.append([])
        else:
            choices.append(top_p_set[:cap])
    dropped = _expert_outputs(h_sd, probs, choices, capacity, w_in, w_out, out)
    return out, fallback, dropped


def top_k_ffn(block_params, h_gsd: np.ndarray, cfg: ModelConfig) -> tuple[np.ndarray, float]:
    w_router, w_in, w_out = _weights(block_params, "w_router_de", "w_in_edf", "w_out_efd")
    g, s, _ = h_gsd.shape
    groups = [routed_group(np.asarray(h_sd, dtype=np.float64), w_router, w_in, w_out, cfg) for h_sd in h_gsd]
    return np.stack([out for out, _, _ in groups]), sum(dropped for _, _, dropped in groups) / (g * s * cfg.top_k)


def adaptive_ffn(block_params, h_gsd: np.ndarray, cfg: ModelConfig, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Top-p with a cap of k_cap experts and the dense fallback (see `routed_group`)."""
    w_router, w_in, w_out, w_fb_in, w_fb_out = _weights(
        block_params, "w_router_de", "w_in_edf", "w_out_efd", "w_fallback_in_df", "w_fallback_out_fd")
    groups = [routed_group(np.asarray(h_sd, dtype=np.float64), w_router, w_in, w_out, cfg, p, None,
                           (w_fb_in, w_fb_out)) for h_sd in h_gsd]
    return np.stack([out for out, _, _ in groups]), np.stack([fallback for _, fallback, _ in groups])


def routed_sectional_trunk(trunk, x_btd: np.ndarray, cfg: ModelConfig, p: float | None) -> tuple[np.ndarray, int]:
    """The sectional trunk with slice_experts > 1: as `sectional_trunk`, but each expert block's FFN
    on slice e is `routed_group` over that slice and layer's candidates (p: the top-p threshold, None
    for top-k). Returns (output, dropped choices)."""
    experts = [np.asarray(a, dtype=np.float64) for a in trunk.experts.weights()]
    routers = trunk.slice_routers
    w_router = np.asarray(routers.w_router_elwm[...], dtype=np.float64)
    bias = np.asarray(routers.router_bias_elm[...], dtype=np.float64) if cfg.balance == "bias" else None
    fallback = (_weights(routers, "w_fallback_in_elwf", "w_fallback_out_elfw") if cfg.fallback_fraction > 0
                else None)
    dropped = []

    def routed_block(e, layer, h):
        norm_attn, w_qkv, w_o, norm_ffn, w_in, w_out = (a[e, layer] for a in experts)
        h = h + attention(np.stack([rms_norm(row, norm_attn) for row in h]), w_qkv, w_o, cfg.expert_heads)
        out, _, drops = routed_group(np.stack([rms_norm(row, norm_ffn) for row in h]), w_router[e, layer], w_in, w_out,
                                     cfg, p, None if bias is None else bias[e, layer],
                                     None if fallback is None else [a[e, layer] for a in fallback])
        dropped.append(drops)
        return h + out

    return sectional_trunk(trunk, x_btd, cfg, routed_block), sum(dropped)
