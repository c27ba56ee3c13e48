"""Jax-free counts for the token-routed expert stage: buffer sizes, slot FLOPs and useful FLOPs.

Slot FLOPs are what the static program executes: every expert runs all `capacity` slots of every
group, filled or not, and the dense fallback runs its whole buffer. Useful FLOPs count only the
assignments that happened (kept expert choices, tokens that fell back). With top-k at a capacity
that never binds, the two differ by the capacity factor; with adaptive routing, slot FLOPs are set
by k_target (capacity) and useful FLOPs by the realised k. Units: 2 FLOPs per multiply-accumulate.
"""

from __future__ import annotations

import math

from smoe.config import ModelConfig


def expert_capacity(tokens_per_group: int, n_experts: int, top_k: float, capacity_factor: float) -> int:
    return max(1, math.ceil(capacity_factor * top_k * tokens_per_group / n_experts))


def fallback_rows(tokens_per_group: int, fraction: float) -> int:
    """Rows of the dense-fallback buffer per group (sequence)."""
    return math.ceil(fraction * tokens_per_group) if fraction > 0 else 0


def _expert_ffn_flops(cfg: ModelConfig) -> float:
    return 2 * 2.0 * cfg.d_model * cfg.d_ff  # in and out projections, per token


def _fallback_ffn_flops(cfg: ModelConfig) -> float:
    return cfg.max_choices * _expert_ffn_flops(cfg) if cfg.fallback_fraction > 0 else 0.0


def slot_flops(cfg: ModelConfig, batch: int) -> float:
    """Forward FLOPs of the expert and fallback FFNs as executed, over `batch` sequences."""
    capacity = expert_capacity(cfg.seq_len, cfg.n_experts, cfg.capacity_k, cfg.capacity_factor)
    per_group = (cfg.n_experts * capacity * _expert_ffn_flops(cfg)
                 + fallback_rows(cfg.seq_len, cfg.fallback_fraction) * _fallback_ffn_flops(cfg))
    return cfg.n_layers * batch * per_group


def useful_flops(cfg: ModelConfig, batch: int, metrics: dict) -> float:
    """Forward FLOPs of the assignments a step really made, from its per-layer metrics
    (layer{i}/mean_k, layer{i}/fraction_dropped, layer{i}/fallback_fraction)."""
    tokens = batch * cfg.seq_len
    total = 0.0
    for layer in range(cfg.n_layers):
        kept_k = metrics[f"layer{layer}/mean_k"] * (1.0 - metrics[f"layer{layer}/fraction_dropped"])
        fallback = metrics[f"layer{layer}/fallback_fraction"]
        total += tokens * (kept_k * _expert_ffn_flops(cfg) + fallback * _fallback_ffn_flops(cfg))
    return total
