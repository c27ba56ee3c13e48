"""Parameters (total and active) and training FLOPs per token, from shapes alone.

Counting from the config rather than a built model keeps the budget heuristic jax-free and instant;
a test checks the totals against `count_params` of real models.
"""

from __future__ import annotations

from smoe.config import ModelConfig
from smoe.measure.analysis import TRAIN_FLOPS_PER_FORWARD, analytic_flops


def _block_params(width: int, d_ff: int) -> int:
    # two norm scales, QKV, output projection, FFN in and out
    return 2 * width + 4 * width * width + 2 * width * d_ff


def _expert_ffn_params(cfg: ModelConfig) -> int:
    return 2 * cfg.d_model * cfg.d_ff


def params_total(cfg: ModelConfig) -> int:
    d = cfg.d_model
    shell = 2 * cfg.vocab_size * d + cfg.seq_len * d + d  # embedding, LM head, positions, final norm
    if cfg.kind == "dense":
        return shell + cfg.n_layers * _block_params(d, cfg.d_ff)
    if cfg.kind == "topk":
        attention = 2 * d + 4 * d * d
        per_layer = attention + d * cfg.n_experts + cfg.n_experts * _expert_ffn_params(cfg)
        return shell + cfg.n_layers * per_layer
    width = cfg.expert_width
    experts = cfg.n_experts * cfg.expert_layers * _block_params(width, cfg.ffn_mult * width)
    mix = d * d if cfg.recombine == "mix" else 0
    return shell + cfg.pre_layers * _block_params(d, cfg.d_ff) + experts + mix


def params_active(cfg: ModelConfig) -> int:
    """Parameters a token passes through. Sectional experts each see every token (on its slice), so
    only top-k has inactive weights: the FFNs of the E - k experts a token was not routed to."""
    if cfg.kind != "topk":
        return params_total(cfg)
    return params_total(cfg) - cfg.n_layers * (cfg.n_experts - cfg.top_k) * _expert_ffn_params(cfg)


def train_flops_per_token(cfg: ModelConfig) -> float:
    """Matmul FLOPs of one training step per token: forward (smoe.measure.analysis) x 3 for backward."""
    return TRAIN_FLOPS_PER_FORWARD * analytic_flops(cfg, 1) / cfg.seq_len
