"""What XLA says about a compiled program, and an explicit matmul FLOP count to check it against.

Units: FLOPs = 2 x multiply-accumulates (one multiply plus one add per MAC), so a [m, k] @ [k, n]
matmul is 2 m n k. theory.CostModel counts MACs; divide these by 2 to compare with it.
"""

from __future__ import annotations

import re

import jax

from smoe.config import ModelConfig
from smoe.routing_flops import expert_capacity, fallback_rows

COLLECTIVES = ("all-to-all", "all-gather", "all-reduce", "reduce-scatter", "collective-permute")
_COLLECTIVE_RE = re.compile(r"\b(all-to-all|all-gather|all-reduce|reduce-scatter|collective-permute)(?:-start)?\(")


def xla_cost(compiled: jax.stages.Compiled) -> dict:
    """FLOPs and bytes accessed from XLA's cost analysis (per device for an SPMD program)."""
    cost = compiled.cost_analysis()
    # Older jax returned one dict per computation in a list; current jax returns a single dict.
    entries = cost if isinstance(cost, (list, tuple)) else [cost or {}]
    return {
        "xla_flops": float(sum(entry.get("flops", 0.0) for entry in entries)),
        "xla_bytes_accessed": float(sum(entry.get("bytes accessed", 0.0) for entry in entries)),
    }


def xla_memory(compiled: jax.stages.Compiled) -> dict:
    """Peak and temporary bytes; field names differ between jax versions and backends."""
    stats = compiled.memory_analysis()
    if stats is None:
        return {"peak_bytes": None, "temp_bytes": None}
    get = lambda name: getattr(stats, name, 0) or 0  # noqa: E731
    peak = get("peak_memory_in_bytes")
    if not peak:
        # Without a reported peak, the live set is bounded by inputs + outputs + scratch, minus donated aliases.
        peak = (get("argument_size_in_bytes") + get("output_size_in_bytes") + get("temp_size_in_bytes")
                - get("alias_size_in_bytes"))
    return {"peak_bytes": int(peak), "temp_bytes": int(get("temp_size_in_bytes"))}


def collective_counts(compiled: jax.stages.Compiled) -> dict[str, int]:
    """Collectives in the optimised HLO; async pairs count once (the `-start` half)."""
    counts = dict.fromkeys(COLLECTIVES, 0)
    for match in _COLLECTIVE_RE.finditer(compiled.as_text()):
        counts[match.group(1)] += 1
    return counts


def _block_terms(prefix: str, tokens: int, seq: int, width: int, d_ff: int, layers: int) -> dict[str, float]:
    """Matmul FLOPs of `layers` pre-norm blocks on `tokens` = batch*seq tokens at `width`.

    Attention scores and weighted values are counted over the full seq x seq square: the causal mask
    is applied after a dense matmul, so that is what the hardware executes.
    """
    return {
        f"{prefix}qkv": layers * 2.0 * tokens * width * 3 * width,
        f"{prefix}attention_scores": layers * 2.0 * tokens * seq * width,
        f"{prefix}attention_values": layers * 2.0 * tokens * seq * width,
        f"{prefix}out_proj": layers * 2.0 * tokens * width * width,
        f"{prefix}ffn_in": layers * 2.0 * tokens * width * d_ff,
        f"{prefix}ffn_out": layers * 2.0 * tokens * d_ff * width,
    }


def _topk_terms(cfg: ModelConfig, batch: int) -> dict[str, float]:
    t, d, e, k = cfg.seq_len, cfg.d_model, cfg.n_experts, cfg.max_choices
    tokens = batch * t
    capacity = expert_capacity(t, e, cfg.capacity_k, cfg.capacity_factor)
    attention = _block_terms("", tokens, t, d, cfg.d_ff, cfg.n_layers)
    slots = batch * e * capacity  # token slots the experts process, dropped or not
    return {
        **{name: attention[name] for name in ("qkv", "attention_scores", "attention_values", "out_proj")},
        "router": cfg.n_layers * 2.0 * tokens * d * e,
        # one-hot (choice, slot) -> (expert, slot) tables: dispatch and combine each contract over k
        "routing_tables": cfg.n_layers * 2 * 2.0 * tokens * e * capacity * k,
        "dispatch": cfg.n_layers * 2.0 * tokens * e * capacity * d,
        "combine": cfg.n_layers * 2.0 * tokens * e * capacity * d,
        "ffn_in": cfg.n_layers * 2.0 * slots * d * cfg.d_ff,
        "ffn_out": cfg.n_layers * 2.0 * slots * cfg.d_ff * d,
        **_fallback_terms(cfg, batch),
    }


def _fallback_terms(cfg: ModelConfig, batch: int) -> dict[str, float]:
    """The adaptive routers' dense fallback: a [rows, d] buffer per sequence through a k_cap-wide FFN."""
    rows = fallback_rows(cfg.seq_len, cfg.fallback_fraction)
    if rows == 0:
        return {}
    tokens, width = batch * cfg.seq_len, cfg.max_choices * cfg.d_ff
    return {"fallback_dispatch_combine": cfg.n_layers * 2 * 2.0 * tokens * rows * cfg.d_model,
            "fallback_ffn": cfg.n_layers * 2 * 2.0 * batch * rows * cfg.d_model * width}


def _sectional_terms(cfg: ModelConfig, batch: int) -> dict[str, float]:
    t, d, e = cfg.seq_len, cfg.d_model, cfg.n_experts
    s, w = t // cfg.shorten, cfg.expert_width
    terms = _block_terms("pre_", batch * t, t, d, cfg.d_ff, cfg.pre_layers)
    # E experts, each a block stack at width d/E on the shortened sequence.
    experts = _block_terms("experts_", batch * s, s, w, cfg.ffn_mult * w, cfg.expert_layers)
    terms |= {name: e * flops for name, flops in experts.items()}
    if cfg.recombine == "mix":
        terms["mix"] = 2.0 * batch * s * d * d
    return terms


def analytic_flop_terms(cfg: ModelConfig, batch: int) -> dict[str, float]:
    """Named matmul FLOP terms of one forward pass over `batch` sequences of cfg.seq_len tokens."""
    if cfg.kind == "dense":
        terms = _block_terms("", batch * cfg.seq_len, cfg.seq_len, cfg.d_model, cfg.d_ff, cfg.n_layers)
    elif cfg.kind == "topk":
        terms = _topk_terms(cfg, batch)
    else:
        terms = _sectional_terms(cfg, batch)
    terms["lm_head"] = 2.0 * batch * cfg.seq_len * cfg.d_model * cfg.vocab_size
    return terms


def analytic_flops(cfg: ModelConfig, batch: int) -> float:
    """Forward matmul FLOPs; embedding lookups are gathers and cost none."""
    return sum(analytic_flop_terms(cfg, batch).values())


# The backward pass does two matmuls per forward matmul (input and weight gradients).
TRAIN_FLOPS_PER_FORWARD = 3.0


def paper_cost_flops(cfg: ModelConfig, batch: int) -> dict[str, float]:
    """The paper's S(E) work terms (theory.CostModel, total-work reading) for this sectional model.

    theory counts one pre-expert block and one expert layer in MACs per sequence; scaled here to
    the model's layers and batch and to FLOPs (2 per MAC). They are the subset of
    `analytic_flop_terms` the paper models: QKV, attention scores and FFN (no attention-weighted
    values, output projections, mixing or LM head), so the two can be compared term by term.
    """
    import theory

    model = theory.CostModel(d0=cfg.d_model, seq_len=cfg.seq_len, seq_reduced=cfg.seq_len // cfg.shorten,
                             alpha=1.0, heads=cfg.expert_heads, regime="work", ffn_mult=cfg.ffn_mult)
    layers = {"pre": cfg.pre_layers, "experts": cfg.expert_layers}
    return {f"theory.{name}": 2.0 * batch * layers[name.rsplit("_", 1)[1]] * float(macs)
            for name, macs in model.terms(cfg.n_experts).items() if name not in ("overhead", "latency")}
