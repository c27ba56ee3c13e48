"""MH-MoE-style sub-token routing inside the sectional experts (issue 11, model.slice_experts > 1).

Each of the E slices (width w = d/E) runs its block stack as in the plain sectional model, attention
included (per slice, over the whole shortened sequence, so causal context is intact), but each
block's FFN is routed: the slice's tokens go to candidate FFNs of the slice's width, M per slice
and layer, chosen by the routers of the top-k family (`adaptive_routing.route_configured`: top_k,
top_p, controlled; Switch or bias balancing; dense fallback), with capacity buffers per candidate.
Routing is per slice and per sequence, so it runs inside the expert stage on the device that holds
the slice; only its statistics (probabilities and choices, not the dispatch tables) come back.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from smoe.config import ModelConfig
from smoe.models import adaptive_routing, routing
from smoe.models.expert_parallel import expert_parallel, per_expert
from smoe.models.layers import INIT_STD, BlockWeights, attention_sublayer, ffn, param, rematerialised, rms_norm
from smoe.models.partitioning import SPECS


class SliceRouterWeights(NamedTuple):
    w_router_wm: jax.Array
    bias_m: jax.Array | None  # balance: bias
    w_fallback: tuple | None  # (w_in_wf, w_out_fw) of the dense fallback FFN


class SliceRouters(nnx.Module):
    """Per slice and expert layer: the router over M candidates, its balance bias and dense
    fallback; plus the controller's p, one for all (DTop-p). The candidate FFNs themselves are the
    sectional experts' FFN weights, drawn with a candidate axis (`BlockParams(ffn_candidates=M)`)."""

    def __init__(self, cfg: ModelConfig, rng: np.random.Generator):
        lead, axes, w, m = (cfg.n_experts, cfg.expert_layers), SPECS.w_el, cfg.expert_width, cfg.slice_experts
        self.w_router_elwm = param(rng, lead + (w, m), axes + (None, None), INIT_STD)
        if cfg.balance == "bias":
            self.router_bias_elm = adaptive_routing.router_state(np.zeros(lead + (m,)), axes + (None,))
        if cfg.fallback_fraction > 0:  # as wide as the candidates a capped token would use
            f = cfg.max_choices * cfg.ffn_mult * w
            self.w_fallback_in_elwf = param(rng, lead + (w, f), axes + (None, None), INIT_STD)
            self.w_fallback_out_elfw = param(rng, lead + (f, w), axes + (None, None),
                                             INIT_STD / (2 * cfg.n_layers) ** 0.5)
        adaptive_routing.add_controller(self, cfg)

    def weights(self, cfg: ModelConfig) -> SliceRouterWeights:
        bias = self.router_bias_elm[...] if cfg.balance == "bias" else None
        fallback = ((self.w_fallback_in_elwf[...], self.w_fallback_out_elfw[...]) if cfg.fallback_fraction > 0
                    else None)
        return SliceRouterWeights(self.w_router_elwm[...], bias, fallback)


def routed_block(cfg: ModelConfig, w: BlockWeights, r: SliceRouterWeights, p: jax.Array | None,
                 x_gsw: jax.Array) -> tuple[jax.Array, routing.Routing]:
    """One slice's block: attention as in the plain block, then the FFN routed among its candidates
    (w.w_in_df / w.w_out_fd carry the candidate axis m first). Groups g are sequences."""
    x_gsw = attention_sublayer(w.norm_attn_d, w.w_qkv_dk, w.w_o_dd, x_gsw, cfg.expert_heads, cfg.attention_impl)
    h_gsw = rms_norm(x_gsw, w.norm_ffn_d)
    route = adaptive_routing.route_configured(cfg, h_gsw, r.w_router_wm, r.bias_m, p)
    run_candidates = lambda x_gmcw: per_expert(lambda wm, x: ffn(x, *wm))((w.w_in_df, w.w_out_fd), x_gmcw)  # noqa: E731
    return x_gsw + adaptive_routing.routed_ffn(route, h_gsw, run_candidates, r.w_fallback, cfg.fallback_fraction), route


def routed_stack_forward(cfg: ModelConfig, weights, x_gsw: jax.Array) -> tuple[jax.Array, list[routing.Routing]]:
    """One slice's expert layers; weights = (block weights [L, ...], router weights [L, ...], p or None).
    Returns each layer's routing without its dispatch and combine tables (only statistics leave)."""
    blocks, routers, p = weights
    step = rematerialised(lambda w, r, x: routed_block(cfg, w, r, p, x), cfg.remat)
    routes = []
    for layer in range(cfg.expert_layers):
        w, r = jax.tree.map(lambda a, i=layer: a[i], (blocks, routers))
        x_gsw, route = step(w, r, x_gsw)
        routes.append(route._replace(dispatch_gsec=None, combine_gsec=None))
    return x_gsw, routes


def pooled(route_bes: routing.Routing) -> routing.Routing:
    """Every slice's sequences as groups of one routing [b*e, s, ...] (batch-major, so the batch
    sharding carries over): the statistics per token (k, drops, fallback, entropy, z) are then those
    of the whole layer."""
    return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), route_bes)


def per_slice(fn):
    """fn over one slice's routing, for every slice of [b, e, s, ...] statistics."""
    return jax.vmap(fn, in_axes=1)


def routed_expert_stage(cfg: ModelConfig, experts, routers: SliceRouters,
                        slices_besw: jax.Array) -> tuple[jax.Array, dict]:
    """The sectional expert stage with routed FFNs: (out [b, e, s, w], aux). Advances the routing state
    (bias per slice and layer, controller) like the top-k trunk; only the train step keeps it.

    Per layer, the Switch loss is the mean over slices of each slice router's own loss (each
    balances its own M candidates), MaxVio the worst slice's, and expert_load the E*M loads / E.
    """
    p = adaptive_routing.top_p_threshold(routers, cfg)
    p_e = None if p is None else jnp.broadcast_to(p, (cfg.n_experts,))
    out_besw, routes = expert_parallel(lambda w, x: routed_stack_forward(cfg, w, x),
                                       (experts.weights(), routers.weights(cfg), p_e), slices_besw)
    fixed_k = cfg.top_k if cfg.routing == "top_k" else None
    aux_loss, metrics, mean_k = jnp.zeros((), jnp.float32), {}, []
    for i, route_bes in enumerate(routes):
        balance_e = per_slice(lambda r: routing.load_balance_loss(r, fixed_k))(route_bes)
        aux_loss, layer_metrics = adaptive_routing.add_layer_aux(cfg, aux_loss, pooled(route_bes), jnp.mean(balance_e))
        max_vio_e = per_slice(lambda r: adaptive_routing.adaptive_metrics(r)["max_vio"])(route_bes)
        layer_metrics["max_vio"] = jnp.max(max_vio_e)
        layer_metrics["expert_load"] = per_slice(routing.expert_fraction)(route_bes).reshape(-1) / cfg.n_experts
        metrics.update({f"layer{cfg.pre_layers + i}/{name}": value for name, value in layer_metrics.items()})
        mean_k.append(layer_metrics["mean_k"])
        if cfg.balance == "bias":
            bias_elm = routers.router_bias_elm[...]
            bias_em = jax.vmap(adaptive_routing.bias_update, in_axes=(0, 1))(bias_elm[:, i], route_bes)
            routers.router_bias_elm[...] = bias_elm.at[:, i].set(bias_em)
    adaptive_routing.advance_controller(routers, cfg, p, mean_k, metrics)
    return out_besw, {"aux_loss": aux_loss, "metrics": metrics}
