"""Analytic matmul FLOPs and parameter counts of every model family, from its config alone.

Jax-free, so the CLI, the budget heuristic and theory cross-checks use it without starting jax;
tests check it against XLA's cost analysis and against `count_params` of built models.
Units: FLOPs = 2 x multiply-accumulates, so a [m, k] @ [k, n] matmul is 2 m n k (theory.CostModel
counts MACs). A new family adds one entry to FLOP_TERMS and one to PARAMS, keyed by `model.kind`.
"""

from __future__ import annotations

import math
from typing import Callable

from smoe.config import ModelConfig
from smoe.sparse_attention_cost import sparse_attention_terms
from smoe.sparsity.layout import kept, layout_for

# The backward pass does two matmuls per forward matmul (input and weight gradients).
TRAIN_FLOPS_PER_FORWARD = 3.0


def expert_capacity(tokens_per_group: int, n_experts: int, top_k: float, capacity_factor: float) -> int:
    """Token slots per expert per group in token-routed MoE (the model and this count share it);
    `top_k` is the experts-per-token capacity is sized for (k_target for the adaptive routers)."""
    return max(1, math.ceil(capacity_factor * top_k * tokens_per_group / n_experts))


def fallback_rows(tokens_per_group: int, fraction: float) -> int:
    """Rows of the adaptive routers' dense-fallback buffer per group (sequence)."""
    return math.ceil(fraction * tokens_per_group) if fraction > 0 else 0


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


def _dense_terms(cfg: ModelConfig, batch: int) -> dict[str, float]:
    return _block_terms("", batch * cfg.seq_len, cfg.seq_len, cfg.d_model, cfg.d_ff, cfg.n_layers)


def _topk_terms(cfg: ModelConfig, batch: int) -> dict[str, float]:
    t, d = cfg.seq_len, cfg.d_model
    attention = _block_terms("", batch * t, t, d, cfg.d_ff, cfg.n_layers)
    return {**{name: attention[name] for name in ("qkv", "attention_scores", "attention_values", "out_proj")},
            **_routed_ffn_terms("", cfg, batch)}


def routed_shape(cfg: ModelConfig) -> tuple[int, int, int, int, int, int]:
    """Where a routed family routes: (routed groups per sequence, tokens per group, width, FFN width,
    experts per router, routed layers). Top-k: one group of seq_len tokens at width d among E experts
    per layer; sectional with slice_experts: every slice of every expert layer, at width d/E, among
    slice_experts candidates, over the shortened sequence."""
    if cfg.kind == "topk":
        return 1, cfg.seq_len, cfg.d_model, cfg.d_ff, cfg.n_experts, cfg.n_layers
    width = cfg.expert_width
    return (cfg.n_experts, cfg.seq_len // cfg.shorten, width, cfg.ffn_mult * width, cfg.slice_experts,
            cfg.expert_layers)


def _routed_ffn_terms(prefix: str, cfg: ModelConfig, batch: int) -> dict[str, float]:
    """The routed FFN sub-layers: router, one-hot routing tables, dispatch, experts, combine, fallback."""
    groups_per_seq, t, d, d_ff, e, layers = routed_shape(cfg)
    groups, k = batch * groups_per_seq, cfg.max_choices
    tokens = groups * t
    capacity = expert_capacity(t, e, cfg.capacity_k, cfg.capacity_factor)
    slots = groups * e * capacity  # token slots the experts process, dropped or not
    terms = {
        "router": layers * 2.0 * tokens * d * e,
        # one-hot (choice, slot) -> (expert, slot) tables: dispatch and combine each contract over k
        "routing_tables": layers * 2 * 2.0 * tokens * e * capacity * k,
        "dispatch": layers * 2.0 * tokens * e * capacity * d,
        "combine": layers * 2.0 * tokens * e * capacity * d,
        "ffn_in": layers * 2.0 * slots * d * d_ff,
        "ffn_out": layers * 2.0 * slots * d_ff * d,
    }
    rows = fallback_rows(t, cfg.fallback_fraction)
    if rows:  # a [rows, d] buffer per group through a k_cap-wide dense FFN
        terms |= {"fallback_dispatch_combine": layers * 2 * 2.0 * tokens * rows * d,
                  "fallback_ffn": layers * 2 * 2.0 * groups * rows * d * k * d_ff}
    return {prefix + name: flops for name, flops in terms.items()}


def _sectional_terms(cfg: ModelConfig, batch: int) -> dict[str, float]:
    t, d, e = cfg.seq_len, cfg.d_model, cfg.n_experts
    s, w = t // cfg.shorten, cfg.expert_width
    terms = _block_terms("pre_", batch * t, t, d, cfg.d_ff, cfg.pre_layers)
    # E experts, each a block stack at width d/E on the shortened sequence.
    experts = _block_terms("experts_", batch * s, s, w, cfg.ffn_mult * w, cfg.expert_layers)
    terms |= {name: e * flops for name, flops in experts.items()}
    if cfg.slice_experts > 1:  # each slice's FFN routed among its candidates
        terms |= _routed_ffn_terms("experts_", cfg, batch)
    if cfg.recombine == "mix":
        terms["mix"] = 2.0 * batch * s * d * d
    return terms


# model.kind -> named forward matmul FLOP terms of its trunk over `batch` sequences
FLOP_TERMS: dict[str, Callable[[ModelConfig, int], dict[str, float]]] = {
    "dense": _dense_terms, "topk": _topk_terms, "sectional": _sectional_terms}


def analytic_flop_terms(cfg: ModelConfig, batch: int) -> dict[str, float]:
    """Named matmul FLOP terms of one forward pass over `batch` sequences of cfg.seq_len tokens;
    sparse attention (model.attention: indexer) replaces the attention terms it changes."""
    terms = FLOP_TERMS[cfg.kind](cfg, batch) | sparse_attention_terms(cfg, batch)
    return terms | {"lm_head": 2.0 * batch * cfg.seq_len * cfg.d_model * cfg.vocab_size}


def analytic_flops(cfg: ModelConfig, batch: int) -> float:
    """Forward matmul FLOPs; embedding lookups are gathers and cost none."""
    return sum(analytic_flop_terms(cfg, batch).values())


# Block terms contextual sparsity (smoe.sparsity) shrinks: per kept head, or per kept FFN neuron.
HEAD_TERMS = ("qkv", "attention_scores", "attention_values", "out_proj")
NEURON_TERMS = ("ffn_in", "ffn_out")

# model.kind -> {term prefix: (heads, FFN neurons) per group of those blocks}; top-k has no entry
PRUNABLE_UNITS: dict[str, Callable[[ModelConfig], dict[str, tuple[int, int]]]] = {
    "dense": lambda cfg: {"": (cfg.n_heads, cfg.d_ff)},
    "sectional": lambda cfg: {"pre_": (cfg.n_heads, cfg.d_ff),
                              "experts_": (cfg.expert_heads, cfg.ffn_mult * cfg.expert_width)}}


def pruned_flop_terms(cfg: ModelConfig, batch: int, sparsity: float) -> dict[str, float]:
    """`analytic_flop_terms` when every block keeps `kept(units, sparsity)` heads and FFN neurons per
    group (the per-layer budgets of smoe.sparsity): what gathered execution multiplies. Masked
    execution multiplies the dense terms; attention over the kept heads shrinks with them."""
    layout_for(cfg)  # refuses a family sparsity cannot run, with the one-line error
    terms = analytic_flop_terms(cfg, batch)
    for prefix, (heads, neurons) in PRUNABLE_UNITS[cfg.kind](cfg).items():
        for names, units in ((HEAD_TERMS, heads), (NEURON_TERMS, neurons)):
            for name in names:
                terms[prefix + name] *= kept(units, sparsity) / units
    return terms


def predictor_flops(cfg: ModelConfig, predictor: str, hidden: int) -> int:
    """FLOPs per input of the importance predictor MLP(s), ShadowLLM's perf model (2 per multiply-add):
    shadow: d*p + p*(all heads + neurons) once; dejavu: per layer d*p + p*(that layer's heads + neurons)."""
    layout = layout_for(cfg)
    if predictor == "shadow":
        return 2 * (layout.d_model * hidden + hidden * (layout.total_heads + layout.total_neurons))
    return 2 * sum(layout.d_model * hidden + hidden * layer.groups * (layer.heads + layer.neurons)
                   for layer in layout.layers)


def sparse_flops_per_token(cfg: ModelConfig, sparsity: float, mode: str, predictor_flops_per_input: float = 0.0
                           ) -> dict[str, float]:
    """Forward FLOPs per token over a seq_len window under contextual sparsity, beside the dense count.

    `pruned_matmuls` sums the head and FFN terms (what gathering shrinks; masking runs them dense);
    the predictor runs once per window. `total` = dense - dense pruned_matmuls + pruned_matmuls + predictor.
    """
    dense = analytic_flop_terms(cfg, 1)
    executed = pruned_flop_terms(cfg, 1, sparsity) if mode == "gather" else dense
    prunable = [prefix + name for prefix in PRUNABLE_UNITS[cfg.kind](cfg) for name in HEAD_TERMS + NEURON_TERMS]
    per_token = 1.0 / cfg.seq_len
    return {"dense": sum(dense.values()) * per_token,
            "dense_pruned_matmuls": sum(dense[name] for name in prunable) * per_token,
            "pruned_matmuls": sum(executed[name] for name in prunable) * per_token,
            "predictor": predictor_flops_per_input * per_token,
            "total": (sum(executed.values()) + predictor_flops_per_input) * per_token}


def train_flops_per_token(cfg: ModelConfig) -> float:
    """Matmul FLOPs of one training step per token: forward x 3 for the backward."""
    return TRAIN_FLOPS_PER_FORWARD * analytic_flops(cfg, 1) / cfg.seq_len


def _expert_ffn_flops(cfg: ModelConfig) -> float:
    """One routed expert's in and out projections, per token."""
    _, _, width, d_ff, _, _ = routed_shape(cfg)
    return 2 * 2.0 * width * d_ff


def _fallback_ffn_flops(cfg: ModelConfig) -> float:
    return cfg.max_choices * _expert_ffn_flops(cfg) if cfg.fallback_fraction > 0 else 0.0


def slot_flops(cfg: ModelConfig, batch: int) -> float:
    """The routed expert stage as executed: every expert runs all `capacity` slots of every group,
    filled or not, and the dense fallback its whole buffer (forward FLOPs over `batch` sequences)."""
    groups_per_seq, t, _, _, experts, layers = routed_shape(cfg)
    capacity = expert_capacity(t, experts, cfg.capacity_k, cfg.capacity_factor)
    per_group = (experts * capacity * _expert_ffn_flops(cfg)
                 + fallback_rows(t, cfg.fallback_fraction) * _fallback_ffn_flops(cfg))
    return layers * batch * groups_per_seq * per_group


def useful_flops(cfg: ModelConfig, batch: int, metrics: dict) -> float:
    """The assignments a step really made, from its per-layer metrics (layer{i}/mean_k,
    layer{i}/fraction_dropped, layer{i}/fallback_fraction over cfg.routed_layers): with adaptive
    routing slot FLOPs are set by k_target (capacity), useful FLOPs by the realised k."""
    groups_per_seq, t, _, _, _, _ = routed_shape(cfg)
    tokens = batch * groups_per_seq * t
    total = 0.0
    for layer in cfg.routed_layers:
        kept_k = metrics[f"layer{layer}/mean_k"] * (1.0 - metrics[f"layer{layer}/fraction_dropped"])
        fallback = metrics[f"layer{layer}/fallback_fraction"]
        total += tokens * (kept_k * _expert_ffn_flops(cfg) + fallback * _fallback_ffn_flops(cfg))
    return total


def paper_cost_flops(cfg: ModelConfig, batch: int) -> dict[str, float]:
    """The paper's S(E) work terms (theory.CostModel, total-work reading) for this sectional model.

    theory counts one pre-expert block and one expert layer in MACs per sequence; scaled here to
    the model's layers and batch and to FLOPs (2 per MAC). They are the subset of
    `analytic_flop_terms` the paper models: QKV, attention scores and FFN (no attention-weighted
    values, output projections, mixing or LM head), so the two can be compared term by term.
    With sparse attention theory counts k keys per query and the indexers' scores, which is what
    the gather mode computes (mask and block modes score more keys than that).
    """
    import theory

    sparse = {} if cfg.attention == "dense" else {
        "attention_topk": cfg.attention_topk, "indexer_heads": cfg.indexer_heads, "indexer_dim": cfg.indexer_dim,
        "attention_in": cfg.attention_in}
    model = theory.CostModel(d0=cfg.d_model, seq_len=cfg.seq_len, seq_reduced=cfg.seq_len // cfg.shorten,
                             alpha=1.0, heads=cfg.expert_heads, regime="work", ffn_mult=cfg.ffn_mult, **sparse)
    layers = {"pre": cfg.pre_layers, "experts": cfg.expert_layers}
    return {f"theory.{name}": 2.0 * batch * layers[name.rsplit("_", 1)[1]] * float(macs)
            for name, macs in model.terms(cfg.n_experts).items() if name not in ("overhead", "latency")}


def _block_params(width: int, d_ff: int) -> int:
    # two norm scales, QKV, output projection, FFN in and out
    return 2 * width + 4 * width * width + 2 * width * d_ff


def _expert_ffn_params(cfg: ModelConfig) -> int:
    _, _, width, d_ff, _, _ = routed_shape(cfg)
    return 2 * width * d_ff


def _fallback_params(cfg: ModelConfig) -> int:
    return cfg.max_choices * _expert_ffn_params(cfg) if cfg.fallback_fraction > 0 else 0


def _dense_params(cfg: ModelConfig) -> int:
    return cfg.n_layers * _block_params(cfg.d_model, cfg.d_ff)


def _topk_params(cfg: ModelConfig) -> int:
    d = cfg.d_model
    attention = 2 * d + 4 * d * d
    return cfg.n_layers * (attention + d * cfg.n_experts + cfg.n_experts * _expert_ffn_params(cfg)
                           + _fallback_params(cfg))


def _sectional_params(cfg: ModelConfig) -> int:
    width = cfg.expert_width
    experts = cfg.n_experts * cfg.expert_layers * _block_params(width, cfg.ffn_mult * width)
    if cfg.slice_experts > 1:  # per slice and layer: M - 1 more candidate FFNs, the router, the fallback
        m = cfg.slice_experts
        experts += cfg.n_experts * cfg.expert_layers * (
            (m - 1) * _expert_ffn_params(cfg) + width * m + _fallback_params(cfg))
    mix = cfg.d_model ** 2 if cfg.recombine == "mix" else 0
    return cfg.pre_layers * _block_params(cfg.d_model, cfg.d_ff) + experts + mix


# model.kind -> parameters of its trunk
PARAMS: dict[str, Callable[[ModelConfig], int]] = {
    "dense": _dense_params, "topk": _topk_params, "sectional": _sectional_params}


def params_total(cfg: ModelConfig) -> int:
    d = cfg.d_model
    shell = 2 * cfg.vocab_size * d + cfg.seq_len * d + d  # embedding, LM head, positions, final norm
    return shell + PARAMS[cfg.kind](cfg)


def params_active(cfg: ModelConfig) -> int:
    """Parameters a token passes through. Sectional slices each see every token, so only routed FFNs
    have inactive weights: the E - k experts (top-k), or M - k candidates per slice, a token was not
    routed to.

    For the adaptive routers k is `capacity_k` (k_target), the experts per token the program is sized
    for, as slot FLOPs are, not the realised k (a training outcome, in the metrics). The dense
    fallback's FFN counts as inactive: a token passes through it only instead of its experts."""
    if not cfg.routed:
        return params_total(cfg)
    groups_per_seq, _, _, _, experts, layers = routed_shape(cfg)
    inactive = (experts - cfg.capacity_k) * _expert_ffn_params(cfg) + _fallback_params(cfg)
    return round(params_total(cfg) - layers * groups_per_seq * inactive)


FP32_BYTES = 4


def exchange_traffic(cfg: ModelConfig, batch: int, mesh_data: int, mesh_expert: int, scale: int = 1) -> dict:
    """What one device sends in the sectional expert stage's exchange (two all-to-alls over the
    `expert` mesh axis) on a buffer of `scale` times the batch: one message to each other device of
    its expert group per all-to-all, carrying that device's share of the local fp32 buffer."""
    local_bytes = FP32_BYTES * scale * batch * (cfg.seq_len // cfg.shorten) * cfg.d_model / (mesh_data * mesh_expert)
    return {"messages_per_device": 2 * (mesh_expert - 1),
            "bytes_per_device": 2 * local_bytes * (mesh_expert - 1) / mesh_expert}
