"""The routing keys of a model config (issue 11), checked from `ModelConfig.__post_init__`.

Tokens are routed in kind topk (among n_experts expert FFNs) and in kind sectional with
slice_experts > 1 (each slice's FFN among slice_experts candidates); other models refuse the keys.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from smoe.errors import require

ROUTINGS = ("top_k", "top_p", "controlled")
BALANCES = ("switch", "bias", "none")
ADAPTIVE_KEYS = ("routing", "k_cap", "balance", "dynamic_loss_coef", "fallback_fraction", "renormalize_gates")


def check_routing(cfg: Any) -> None:
    """One-line UserError naming the first routing key of `cfg` (a ModelConfig) that is out of range."""
    if not cfg.routed:
        defaults = {f.name: f.default for f in fields(cfg)}
        changed = [name for name in ADAPTIVE_KEYS if getattr(cfg, name) != defaults[name]]
        require(not changed, f"model.{changed[0] if changed else 'routing'}",
                "adaptive routing applies to kind: topk, or sectional with slice_experts > 1; remove the key "
                "or set model.kind: topk")
        return
    experts, name = cfg.routed_experts, "n_experts" if cfg.kind == "topk" else "slice_experts"
    require(cfg.top_k <= experts, "model.top_k", f"must be <= {name}={experts}, got {cfg.top_k}")
    require(cfg.routing in ROUTINGS, "model.routing", f"must be one of {ROUTINGS}, got {cfg.routing!r}")
    require(cfg.balance in BALANCES, "model.balance", f"must be one of {BALANCES}, got {cfg.balance!r}")
    require(0.0 < cfg.top_p <= 1.0, "model.top_p", f"must be in (0, 1], got {cfg.top_p}")
    if cfg.routing != "top_k":
        require(0.0 < cfg.k_target <= experts, "model.k_target",
                f"must be in (0, {name}={experts}], got {cfg.k_target}")
    require(0 <= cfg.k_cap <= experts, "model.k_cap", f"must be in [0, {name}={experts}] (0 = no cap), got {cfg.k_cap}")
    require(cfg.dynamic_loss_coef >= 0, "model.dynamic_loss_coef", f"must be >= 0, got {cfg.dynamic_loss_coef}")
    require(0.0 <= cfg.fallback_fraction < 1.0, "model.fallback_fraction",
            f"must be in [0, 1) (0 = no dense fallback), got {cfg.fallback_fraction}")
    require(not (cfg.renormalize_gates and cfg.routing == "top_k"), "model.renormalize_gates",
            "applies to routing top_p or controlled (top-k gates are the raw probabilities)")
    if cfg.fallback_fraction > 0:
        require(cfg.routing != "top_k" and cfg.max_choices < experts, "model.fallback_fraction",
                "a token falls back when its top-p set would exceed k_cap: set model.routing to top_p or "
                f"controlled and 0 < model.k_cap < {name}")
