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


def route_top_k(x_gsd: jax.Array, w_router_de: jax.Array, top_k: int, capacity: int) -> Routing:
    """Each token picks its top-k experts; slots fill choice-major, then in token order (GShard).

    Filling all first choices before any second choice means a token's best expert is dropped only
    when that expert is oversubscribed by first choices alone.
    """
    logits_gse = (x_gsd @ w_router_de).astype(jnp.float32)
    probs_gse = jax.nn.softmax(logits_gse, axis=-1)
    gate_gsk, expert_gsk = jax.lax.top_k(probs_gse, top_k)
    n_experts = w_router_de.shape[-1]
    assigned_gske = jax.nn.one_hot(expert_gsk, n_experts, dtype=jnp.float32)
    g, s = expert_gsk.shape[:2]
    assigned_gre = assigned_gske.transpose(0, 2, 1, 3).reshape(g, top_k * s, n_experts)  # r = k-major rank
    slot_gre = jnp.cumsum(assigned_gre, axis=1) - 1.0
    slot_gske = slot_gre.reshape(g, top_k, s, n_experts).transpose(0, 2, 1, 3)
    slot_gsk = jnp.sum(slot_gske * assigned_gske, axis=-1).astype(jnp.int32)
    kept_gsk = slot_gsk < capacity
    slot_onehot_gskc = jax.nn.one_hot(jnp.where(kept_gsk, slot_gsk, capacity), capacity, dtype=jnp.float32)
    dispatch_gsec = jnp.einsum("gske,gskc->gsec", assigned_gske, slot_onehot_gskc)
    combine_gsec = jnp.einsum("gske,gskc,gsk->gsec", assigned_gske, slot_onehot_gskc, gate_gsk)
    return Routing(dispatch_gsec, combine_gsec, probs_gse, logits_gse, assigned_gske, kept_gsk)


def load_balance_loss(routing: Routing) -> jax.Array:
    """Switch loss E * sum_e f_e P_e with f scaled by 1/k, so perfectly balanced routing gives exactly 1."""
    n_experts = routing.probs_gse.shape[-1]
    top_k = routing.assigned_gske.shape[2]
    fraction_e = jnp.mean(jnp.sum(routing.assigned_gske, axis=2), axis=(0, 1)) / top_k
    mean_prob_e = jnp.mean(routing.probs_gse, axis=(0, 1))
    return n_experts * jnp.sum(fraction_e * mean_prob_e)


def router_z_loss(routing: Routing) -> jax.Array:
    """ST-MoE z-loss: keeps router logits small so the softmax stays well conditioned."""
    return jnp.mean(jnp.square(jax.nn.logsumexp(routing.logits_gse, axis=-1)))


def routing_metrics(routing: Routing) -> dict[str, jax.Array]:
    top_k = routing.assigned_gske.shape[2]
    load_e = jnp.mean(jnp.sum(routing.assigned_gske, axis=2), axis=(0, 1)) / top_k
    entropy = -jnp.sum(routing.probs_gse * jnp.log(routing.probs_gse + 1e-9), axis=-1)
    return {
        "expert_load": load_e,
        "fraction_dropped": 1.0 - jnp.mean(routing.kept_gsk.astype(jnp.float32)),
        "router_entropy": jnp.mean(entropy),
    }


def dispatch(x_gsd: jax.Array, dispatch_gsec: jax.Array) -> jax.Array:
    return jnp.einsum("gsd,gsec->gecd", x_gsd, dispatch_gsec.astype(x_gsd.dtype))


def combine(y_gecd: jax.Array, combine_gsec: jax.Array) -> jax.Array:
    """Dropped tokens get zeros here and pass through on the residual."""
    return jnp.einsum("gecd,gsec->gsd", y_gecd, combine_gsec.astype(y_gecd.dtype))
