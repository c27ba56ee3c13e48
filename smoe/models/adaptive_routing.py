"""Adaptive-k routing as pure functions beside `routing.route_top_k`.

* top-p (Huang et al. 2024, arXiv 2403.07652): experts sorted by router probability; rank j is kept
  while the exclusive cumulative probability of the ranks before it is <= p (rank 0 always).
* controlled top-p (DTop-p, arXiv 2512.13996): a PI controller moves p so the mean number of
  active experts tracks k_target, so compute is chosen rather than accidental.
* aux-loss-free balancing (DeepSeek-V3, arXiv 2408.15664): a per-expert bias added to the scores
  that select experts, never to the gates, nudged by b_e += u * sign(mean_load - load_e).
* dense fallback: a token whose top-p set would exceed k_cap (an uncertain router) goes through a
  shared dense FFN instead of its experts, in a fixed buffer of ceil(f * tokens) rows per group.

Shapes stay static: every token has `k_cap` choice columns; a column it does not take gets expert
index NO_EXPERT, whose one-hot row is zero, so it takes no capacity slot and counts no load.
The bias and controller values are state carried outside the gradient (see `RouterState`).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from smoe.accounting import expert_capacity, fallback_rows
from smoe.config import ModelConfig
from smoe.models import routing
from smoe.models.layers import ffn

NO_EXPERT = -1
BIAS_RATE = 1e-3  # u of Loss-Free Balancing / DeepSeek-V3
# PI gains in units of p per expert of error. Small on purpose: the batch mean of k is noisy, and a
# stationary 8-expert router settles within ~100 steps without oscillating (see the tests).
CONTROLLER_KP = 0.02
CONTROLLER_KI = 0.01


class RouterState(nnx.Variable):
    """Non-gradient routing state (balance bias, controller): the optimizer never sees it; the
    train step writes its new value, and it is checkpointed with the parameters."""


def router_state(value, axes: tuple[str | None, ...]) -> RouterState:
    return RouterState(jnp.asarray(value, jnp.float32), out_sharding=axes, eager_sharding=False)


def top_p_keep(gate_gsk: jax.Array, p: jax.Array | float) -> jax.Array:
    """Rank j (gates sorted descending) is kept iff sum_{i<j} gate_i <= p; rank 0 always."""
    exclusive_gsk = jnp.cumsum(jnp.concatenate([jnp.zeros_like(gate_gsk[..., :1]), gate_gsk[..., :-1]], -1), -1)
    return (exclusive_gsk <= p) | (jnp.arange(gate_gsk.shape[-1]) == 0)


def select_experts(probs_gse: jax.Array, bias_e: jax.Array | None, n_choices: int) -> tuple[jax.Array, jax.Array]:
    """The n best experts by probs + bias, gated by their unbiased probabilities."""
    if bias_e is None:
        return jax.lax.top_k(probs_gse, n_choices)
    _, expert_gsk = jax.lax.top_k(probs_gse + bias_e, n_choices)
    return jnp.take_along_axis(probs_gse, expert_gsk, axis=-1), expert_gsk


def route_adaptive(x_gsd: jax.Array, w_router_de: jax.Array, bias_e: jax.Array | None, p: jax.Array | None,
                   n_choices: int, capacity: int, fallback_rows: int = 0,
                   renormalize: bool = False) -> routing.Routing:
    """Top-p (p given) or top-k (p None, k = n_choices) routing, with optional bias and fallback.

    Fallback tokens are taken first come, first served in token order, so whether a token falls
    back never depends on later tokens (the model stays causal when capacity does not bind).
    """
    logits_gse = (x_gsd @ w_router_de).astype(jnp.float32)
    probs_gse = jax.nn.softmax(logits_gse, axis=-1)
    gate_gsk, expert_gsk = select_experts(probs_gse, bias_e, n_choices)
    keep_gsk = jnp.ones(gate_gsk.shape, bool) if p is None else top_p_keep(gate_gsk, p)
    fallback_gs = None
    if fallback_rows > 0:
        uncertain_gs = jnp.sum(gate_gsk, axis=-1) <= p  # rank n_choices would be kept too
        fallback_gs = uncertain_gs & (jnp.cumsum(uncertain_gs, axis=1) <= fallback_rows)
        keep_gsk = keep_gsk & ~fallback_gs[..., None]
    gate_gsk = jnp.where(keep_gsk, gate_gsk, 0.0)
    if renormalize:
        gate_gsk = gate_gsk / jnp.maximum(jnp.sum(gate_gsk, axis=-1, keepdims=True), 1e-9)
    expert_gsk = jnp.where(keep_gsk, expert_gsk, NO_EXPERT)
    route = routing.assign_slots(logits_gse, probs_gse, gate_gsk, expert_gsk, capacity)
    return route._replace(fallback_gs=fallback_gs)


def route_configured(cfg: ModelConfig, h_gsd: jax.Array, w_router_de: jax.Array, bias_e: jax.Array | None,
                     p: jax.Array | None) -> routing.Routing:
    """The router model.routing and model.balance name, over the router's experts, with capacity
    sized for model.capacity_k; the same for the top-k family and the sectional slices."""
    capacity = expert_capacity(h_gsd.shape[1], w_router_de.shape[-1], cfg.capacity_k, cfg.capacity_factor)
    if cfg.routing == "top_k" and cfg.balance != "bias":
        return routing.route_top_k(h_gsd, w_router_de, cfg.top_k, capacity)
    return route_adaptive(h_gsd, w_router_de, bias_e, p, cfg.max_choices, capacity,
                          fallback_rows(h_gsd.shape[1], cfg.fallback_fraction), cfg.renormalize_gates)


def routed_ffn(route: routing.Routing, h_gsd: jax.Array, run_experts: Callable[[jax.Array], jax.Array],
               w_fallback: tuple | None, fallback_fraction: float) -> jax.Array:
    """Dispatch to the experts' slots, `run_experts` ([g, e, c, d] -> same), combine; fallback tokens
    go through the dense FFN `w_fallback` = (w_in, w_out) in their fixed buffer."""
    y_gsd = routing.combine(run_experts(routing.dispatch(h_gsd, route.dispatch_gsec)), route.combine_gsec)
    if route.fallback_gs is None:
        return y_gsd
    buffer_gsc = fallback_dispatch(route.fallback_gs, fallback_rows(h_gsd.shape[1], fallback_fraction))
    buffer_gsc = buffer_gsc.astype(h_gsd.dtype)
    y_gcd = ffn(jnp.einsum("gsd,gsc->gcd", h_gsd, buffer_gsc), *w_fallback)
    return y_gsd + jnp.einsum("gcd,gsc->gsd", y_gcd, buffer_gsc)


def fallback_dispatch(fallback_gs: jax.Array, rows: int) -> jax.Array:
    """[g, s, c] one-hot of each fallback token's row in the fixed buffer (rows fill in token order)."""
    row_gs = jnp.cumsum(fallback_gs, axis=1) - 1
    return jax.nn.one_hot(jnp.where(fallback_gs, row_gs, rows), rows, dtype=jnp.float32)


def expert_counts(route: routing.Routing) -> jax.Array:
    """load_e: how many choices picked expert e (before capacity)."""
    return jnp.sum(route.assigned_gske, axis=(0, 1, 2))


def bias_update(bias_e: jax.Array, route: routing.Routing, rate: float = BIAS_RATE) -> jax.Array:
    load_e = jax.lax.stop_gradient(expert_counts(route))
    return bias_e + rate * jnp.sign(jnp.mean(load_e) - load_e)


def controller_update(p: jax.Array, integral: jax.Array, mean_k: jax.Array, k_target: float,
                      p_base: float) -> tuple[jax.Array, jax.Array]:
    """Positional PI step: p = p_base + Kp e + Ki sum(e), e = k_target - mean k, p clipped to [0, 1].

    The integral is clipped to the range that can move p across [0, 1] (anti-windup).
    """
    error = k_target - jax.lax.stop_gradient(mean_k)
    integral = jnp.clip(integral + error, -1.0 / CONTROLLER_KI, 1.0 / CONTROLLER_KI)
    return jnp.clip(p_base + CONTROLLER_KP * error + CONTROLLER_KI * integral, 0.0, 1.0), integral


def add_layer_aux(cfg: ModelConfig, aux_loss: jax.Array, route: routing.Routing,
                  balance: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """aux_loss plus one routed layer's weighted losses (Switch balance `balance`, z, dynamic), and
    that layer's routing metrics."""
    z = routing.router_z_loss(route)
    aux_loss = aux_loss + (cfg.load_balance_coef if cfg.balance == "switch" else 0.0) * balance + cfg.router_z_coef * z
    if cfg.dynamic_loss_coef > 0:
        aux_loss = aux_loss + cfg.dynamic_loss_coef * routing.router_entropy(route)
    return aux_loss, (routing.routing_metrics(route) | adaptive_metrics(route)
                      | {"load_balance_loss": balance, "router_z_loss": z})


def add_controller(owner: nnx.Module, cfg: ModelConfig) -> None:
    """routing: controlled keeps one p for all routed layers (DTop-p), so k may differ across depth."""
    if cfg.routing == "controlled":
        owner.router_p = router_state(cfg.top_p, ())
        owner.router_p_integral = router_state(0.0, ())


def top_p_threshold(owner: nnx.Module, cfg: ModelConfig) -> jax.Array | None:
    """The p a forward routes with; None for top-k routing."""
    if cfg.routing == "controlled":
        return owner.router_p[...]
    return jnp.float32(cfg.top_p) if cfg.routing == "top_p" else None


def advance_controller(owner: nnx.Module, cfg: ModelConfig, p: jax.Array, mean_k: list[jax.Array],
                       metrics: dict) -> None:
    """After a forward with threshold p and per-layer mean k: log p, step the controller."""
    if cfg.routing == "controlled":
        metrics["router_p"] = p
        owner.router_p[...], owner.router_p_integral[...] = controller_update(
            p, owner.router_p_integral[...], jnp.mean(jnp.stack(mean_k)), cfg.k_target, cfg.top_p)


def adaptive_metrics(route: routing.Routing) -> dict[str, jax.Array]:
    """Per-layer mean, p95 and histogram of k, MaxVio = (max load - mean load) / mean load, fallback fraction."""
    k_gs = routing.experts_per_token(route)
    # p95 from the histogram of k (inverted-CDF quantile): a reduction, where a sort would gather the batch.
    histogram_v = jnp.sum(jax.nn.one_hot(k_gs.astype(jnp.int32), route.assigned_gske.shape[2] + 1), axis=(0, 1))
    p95_k = jnp.argmax(jnp.cumsum(histogram_v) >= 0.95 * jnp.sum(histogram_v)).astype(jnp.float32)
    load_e = expert_counts(route)
    fallback = 0.0 if route.fallback_gs is None else jnp.mean(route.fallback_gs.astype(jnp.float32))
    return {
        "mean_k": jnp.mean(k_gs),
        "p95_k": p95_k,
        "max_vio": (jnp.max(load_e) - jnp.mean(load_e)) / jnp.mean(load_e),
        "fallback_fraction": jnp.asarray(fallback, jnp.float32),
        "k_histogram": histogram_v / jnp.sum(histogram_v),  # share of tokens with k = 0, 1, ..., max
    }
