"""Token-choice top-k routing with fixed capacity (Switch / GShard), as pure functions.

Shapes: g = group (one sequence), s = token in group, e = expert, c = capacity slot, k = choice.
Groups are sequences, not device shards, so which tokens are dropped never depends on the mesh.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Routing(NamedTuple):
    dispatch_gsec: jax.Array  # 1 where token s sits in slot c of expert e
    combine_gsec: jax.Array  # dispatch weighted by the router gate
    probs_gse: jax.Array
    logits_gse: jax.Array
    assigned_gske: jax.Array  # one-hot choices before capacity, for the load statistics
    kept_gsk: jax.Array  # whether choice k of token s found a free slot
    fallback_gs: jax.Array | None = None  # tokens sent to the dense fallback path (adaptive routers only)


def route_top_k(x_gsd: jax.Array, w_router_de: jax.Array, top_k: int, capacity: int) -> Routing:
    """Each token picks its top-k experts, gated by their router probabilities."""
    logits_gse = (x_gsd @ w_router_de).astype(jnp.float32)
    probs_gse = jax.nn.softmax(logits_gse, axis=-1)
    gate_gsk, expert_gsk = jax.lax.top_k(probs_gse, top_k)
    return assign_slots(logits_gse, probs_gse, gate_gsk, expert_gsk, capacity)


def assign_slots(logits_gse: jax.Array, probs_gse: jax.Array, gate_gsk: jax.Array, expert_gsk: jax.Array,
                 capacity: int) -> Routing:
    """Slots fill choice-major, then in token order (GShard).

    Filling all first choices before any second choice means a token's best expert is dropped only
    when that expert is oversubscribed by first choices alone. A negative expert index is a choice
    not taken: its one-hot row is zero, so it takes no slot and counts no load.
    """
    n_experts = probs_gse.shape[-1]
    top_k = expert_gsk.shape[-1]
    assigned_gske = jax.nn.one_hot(expert_gsk, n_experts, dtype=jnp.float32)
    g, s = expert_gsk.shape[:2]
    assigned_gre = assigned_gske.transpose(0, 2, 1, 3).reshape(g, top_k * s, n_experts)  # r = k-major rank
    slot_gre = jnp.cumsum(assigned_gre, axis=1) - 1.0
    slot_gske = slot_gre.reshape(g, top_k, s, n_experts).transpose(0, 2, 1, 3)
    slot_gsk = jnp.sum(slot_gske * assigned_gske, axis=-1).astype(jnp.int32)
    kept_gsk = (slot_gsk < capacity) & (expert_gsk >= 0)
    slot_onehot_gskc = jax.nn.one_hot(jnp.where(kept_gsk, slot_gsk, capacity), capacity, dtype=jnp.float32)
    dispatch_gsec = jnp.einsum("gske,gskc->gsec", assigned_gske, slot_onehot_gskc)
    combine_gsec = jnp.einsum("gske,gskc,gsk->gsec", assigned_gske, slot_onehot_gskc, gate_gsk)
    return Routing(dispatch_gsec, combine_gsec, probs_gse, logits_gse, assigned_gske, kept_gsk)


def experts_per_token(routing: Routing) -> jax.Array:
    """k_gs: how many experts each token chose (before capacity); fixed at k for top-k routing."""
    return jnp.sum(routing.assigned_gske, axis=(2, 3))


def expert_fraction(routing: Routing, top_k: int | None = None) -> jax.Array:
    """Each expert's share of all choices, normalised by the mean realised k, so it sums to 1.

    `top_k`: every token takes exactly this many choices (top-k routing); dividing by the static
    value keeps the numerics of the fixed-k program, where XLA folds the constant divisor.
    """
    chosen_e = jnp.mean(jnp.sum(routing.assigned_gske, axis=2), axis=(0, 1))
    return chosen_e / (top_k or jnp.mean(experts_per_token(routing)))


def load_balance_loss(routing: Routing, top_k: int | None = None) -> jax.Array:
    """Switch loss E * sum_e f_e P_e with f scaled by 1/mean k, so balanced routing gives exactly 1 for any k."""
    n_experts = routing.probs_gse.shape[-1]
    mean_prob_e = jnp.mean(routing.probs_gse, axis=(0, 1))
    return n_experts * jnp.sum(expert_fraction(routing, top_k) * mean_prob_e)


def router_z_loss(routing: Routing) -> jax.Array:
    """ST-MoE z-loss: keeps router logits small so the softmax stays well conditioned."""
    return jnp.mean(jnp.square(jax.nn.logsumexp(routing.logits_gse, axis=-1)))


def router_entropy(routing: Routing) -> jax.Array:
    """Mean over tokens of H(P_t); also the dynamic loss of top-p routing."""
    return jnp.mean(-jnp.sum(routing.probs_gse * jnp.log(routing.probs_gse + 1e-9), axis=-1))


def routing_metrics(routing: Routing) -> dict[str, jax.Array]:
    chosen = jnp.sum(routing.assigned_gske)
    return {
        "expert_load": expert_fraction(routing),
        "fraction_dropped": 1.0 - jnp.sum(routing.kept_gsk.astype(jnp.float32)) / chosen,
        "router_entropy": router_entropy(routing),
    }


def dispatch(x_gsd: jax.Array, dispatch_gsec: jax.Array) -> jax.Array:
    return jnp.einsum("gsd,gsec->gecd", x_gsd, dispatch_gsec.astype(x_gsd.dtype))


def combine(y_gecd: jax.Array, combine_gsec: jax.Array) -> jax.Array:
    """Dropped tokens get zeros here and pass through on the residual."""
    return jnp.einsum("gecd,gsec->gsd", y_gecd, combine_gsec.astype(y_gecd.dtype))
