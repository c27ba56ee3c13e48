"""The three trunks that sit between the shared embedding and LM head.

Each trunk maps x[b, t, d] -> (x[b, t, d], aux) where aux = {"aux_loss": scalar already weighted by
its coefficient, "metrics": {name: array}}; the LM adds aux_loss to the cross-entropy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from smoe.config import ModelConfig
from smoe.models import adaptive_routing, routing, slice_routing
from smoe.models.expert_parallel import batch_local, expert_parallel
from smoe.models.layers import (INIT_STD, BlockParams, attention_sublayer, block_forward, ffn, mix_slices, param,
                                rematerialised, rms_norm)
from smoe.models.partitioning import SPECS
from smoe.models.shortening import pool_causal, upsample
from smoe.models.sparse_attention import indexed_block_forward, indexer_stack, sparse_aux, sparse_spec

Aux = dict


def _no_aux() -> Aux:
    return {"aux_loss": jnp.zeros((), jnp.float32), "metrics": {}}


def block_step(cfg: ModelConfig, n_heads: int, spec, measure: bool = False):
    """One block as the model runs it, step(w, iw, x) -> (x, indexer stats or None): dense attention
    with the configured kernel when iw is None, else the indexed attention (with its eval-only
    recall when `measure`); rematerialised per block for model.remat: block."""

    def step(w, iw, x_btd):
        if iw is None:
            return block_forward(w, x_btd, n_heads, cfg.attention_impl), None
        return indexed_block_forward(w, iw, x_btd, n_heads, spec, measure)

    return rematerialised(step, cfg.remat)


def run_blocks(blocks, indexers, x_btd: jax.Array, step, first_layer: int = 0):
    """Full-width blocks in order; with indexers (model.attention: indexer) also their per-layer stats."""
    stats = {}
    for i, block in enumerate(blocks):
        x_btd, layer_stats = step(block.weights(), None if indexers is None else indexers[i].weights(), x_btd)
        if layer_stats is not None:
            stats[first_layer + i] = layer_stats
    return x_btd, stats


class DenseTrunk(nnx.Module):
    def __init__(self, cfg: ModelConfig, rng: np.random.Generator):
        self.cfg = cfg
        self.blocks = nnx.List([BlockParams(cfg.d_model, cfg.d_ff, cfg.n_layers, rng) for _ in range(cfg.n_layers)])
        self.spec = sparse_spec(cfg, "dense")
        self.indexers = indexer_stack(cfg, "dense", cfg.n_layers, cfg.d_model, rng)

    def __call__(self, x_btd: jax.Array, measure: bool = False) -> tuple[jax.Array, Aux]:
        step = block_step(self.cfg, self.cfg.n_heads, self.spec, measure)
        x_btd, stats = run_blocks(self.blocks, self.indexers, x_btd, step)
        return x_btd, sparse_aux(stats) if stats else _no_aux()


class TopKBlock(nnx.Module):
    """Attention, then a token-routed FFN whose E experts are each as wide as the dense FFN."""

    def __init__(self, cfg: ModelConfig, rng: np.random.Generator):
        d, f, e = cfg.d_model, cfg.d_ff, cfg.n_experts
        out_std = INIT_STD / (2 * cfg.n_layers) ** 0.5
        self.norm_attn_d = param(rng, (d,), (None,), None)
        self.w_qkv_dk = param(rng, (d, 3 * d), (None, None), INIT_STD)
        self.w_o_dd = param(rng, (d, d), (None, None), out_std)
        self.norm_ffn_d = param(rng, (d,), (None,), None)
        self.w_router_de = param(rng, (d, e), (None, None), INIT_STD)
        self.w_in_edf = param(rng, (e, d, f), SPECS.w_edf, INIT_STD)
        self.w_out_efd = param(rng, (e, f, d), SPECS.w_efd, out_std)
        if cfg.balance == "bias":
            self.router_bias_e = adaptive_routing.router_state(np.zeros(e), (None,))
        if cfg.fallback_fraction > 0:  # as wide as the experts a capped token would use
            self.w_fallback_in_df = param(rng, (d, cfg.max_choices * f), (None, None), INIT_STD)
            self.w_fallback_out_fd = param(rng, (cfg.max_choices * f, d), (None, None), out_std)


def route_tokens(block: TopKBlock, h_gsd: jax.Array, cfg: ModelConfig, p: jax.Array | None) -> routing.Routing:
    bias_e = block.router_bias_e[...] if cfg.balance == "bias" else None
    return batch_local(lambda w, h: adaptive_routing.route_configured(cfg, h, *w), (block.w_router_de[...], bias_e, p),
                       h_gsd)


def top_k_ffn(block: TopKBlock, h_gsd: jax.Array, cfg: ModelConfig,
              p: jax.Array | None = None) -> tuple[jax.Array, routing.Routing]:
    """The routed FFN; `p` is the top-p threshold for the adaptive routers (None for top-k)."""
    route = route_tokens(block, h_gsd, cfg, p)
    run_experts = lambda x_gecd: expert_parallel(  # noqa: E731
        lambda w, x_gcd: ffn(x_gcd, *w), (block.w_in_edf[...], block.w_out_efd[...]), x_gecd)
    w_fallback = (block.w_fallback_in_df[...], block.w_fallback_out_fd[...]) if cfg.fallback_fraction > 0 else None
    return adaptive_routing.routed_ffn(route, h_gsd, run_experts, w_fallback, cfg.fallback_fraction), route


def top_k_layer(block: TopKBlock, x_btd: jax.Array, cfg: ModelConfig,
                p: jax.Array | None) -> tuple[jax.Array, routing.Routing]:
    x_btd = attention_sublayer(block.norm_attn_d[...], block.w_qkv_dk[...], block.w_o_dd[...], x_btd, cfg.n_heads,
                               cfg.attention_impl)
    y_btd, route = top_k_ffn(block, rms_norm(x_btd, block.norm_ffn_d[...]), cfg, p)
    return x_btd + y_btd, route


class TopKTrunk(nnx.Module):
    def __init__(self, cfg: ModelConfig, rng: np.random.Generator):
        self.cfg = cfg
        self.blocks = nnx.List([TopKBlock(cfg, rng) for _ in range(cfg.n_layers)])
        adaptive_routing.add_controller(self, cfg)

    def __call__(self, x_btd: jax.Array, measure: bool = False) -> tuple[jax.Array, Aux]:
        """Also advances the routing state (bias, controller) from this batch's routing; the train
        step keeps the advanced state, every other caller discards it. There are no eval-only
        metrics here (`measure`): routing metrics are cheap enough for every step."""
        cfg = self.cfg
        p = adaptive_routing.top_p_threshold(self, cfg)
        fixed_k = cfg.top_k if cfg.routing == "top_k" else None
        aux_loss = jnp.zeros((), jnp.float32)
        metrics = {}
        mean_k = []
        for layer, block in enumerate(self.blocks):
            x_btd, route = rematerialised(lambda x, block=block: top_k_layer(block, x, cfg, p), cfg.remat)(x_btd)
            aux_loss, layer_metrics = adaptive_routing.add_layer_aux(cfg, aux_loss, route,
                                                                     routing.load_balance_loss(route, fixed_k))
            metrics.update({f"layer{layer}/{name}": value for name, value in layer_metrics.items()})
            mean_k.append(layer_metrics["mean_k"])
            if cfg.balance == "bias":
                block.router_bias_e[...] = adaptive_routing.bias_update(block.router_bias_e[...], route)
        adaptive_routing.advance_controller(self, cfg, p, mean_k, metrics)
        return x_btd, {"aux_loss": aux_loss, "metrics": metrics}


def expert_stack_forward(w_layers, x_btd: jax.Array, step) -> tuple[jax.Array, list]:
    """One expert's layers on its own slice; weights (block weights, indexer weights or None) carry a
    leading layer axis, `step` is `block_step`. Returns the slice and, with indexers, each layer's stats."""
    stats = []
    for layer in range(w_layers[0].w_qkv_dk.shape[0]):
        w, iw = jax.tree.map(lambda a, i=layer: a[i], w_layers)
        x_btd, layer_stats = step(w, iw, x_btd)
        if layer_stats is not None:
            stats.append(layer_stats)
    return x_btd, stats


class SectionalTrunk(nnx.Module):
    """Full-width pre-expert blocks, optional causal shortening, then E experts on d/E slices each.

    The expert stage produces an update `delta` at the shortened length; recombination optionally
    mixes it across slices (delta + delta @ W, W zero at init), and the update is upsampled and added
    to the full-length residual stream. With r = 1, E = 1 and no mixing this is exactly the dense
    trunk, and for the same seed it starts from the same weights (BlockParams draws block by block).
    """

    def __init__(self, cfg: ModelConfig, rng: np.random.Generator):
        self.cfg = cfg
        self.pre_blocks = nnx.List([BlockParams(cfg.d_model, cfg.d_ff, cfg.n_layers, rng) for _ in range(cfg.pre_layers)])
        width = cfg.expert_width
        self.experts = BlockParams(width, cfg.ffn_mult * width, cfg.n_layers, rng,
                                   lead_shape=(cfg.n_experts, cfg.expert_layers), lead_axes=SPECS.w_el,
                                   ffn_candidates=cfg.slice_experts)
        if cfg.slice_experts > 1:
            self.slice_routers = slice_routing.SliceRouters(cfg, rng)
        if cfg.recombine == "mix":
            self.w_mix_dd = param(rng, (cfg.d_model, cfg.d_model), (None, None), 0.0)
        self.pre_spec, self.expert_spec = sparse_spec(cfg, "pre"), sparse_spec(cfg, "experts")
        self.pre_indexers = indexer_stack(cfg, "pre", cfg.pre_layers, cfg.d_model, rng)
        self.expert_indexers = indexer_stack(cfg, "experts", cfg.expert_layers, width, rng,
                                             lead_shape=(cfg.n_experts, cfg.expert_layers),
                                             lead_axes=SPECS.w_el)

    def expert_input(self, x_btd: jax.Array, measure: bool = False) -> tuple[jax.Array, jax.Array, jax.Array, dict]:
        """Everything before the expert stage: (full-length stream, shortened stream, its E slices,
        the pre-expert blocks' indexer stats)."""
        cfg = self.cfg
        step = block_step(cfg, cfg.n_heads, self.pre_spec, measure)
        x_btd, stats = run_blocks(self.pre_blocks, self.pre_indexers, x_btd, step)
        short_bsd = pool_causal(x_btd, cfg.shorten)
        b, s, _ = short_bsd.shape
        slices_besw = short_bsd.reshape(b, s, cfg.n_experts, cfg.expert_width).transpose(0, 2, 1, 3)
        return x_btd, short_bsd, slices_besw, stats

    def expert_weights(self):
        """What `expert_fn` takes per expert: its block stack and its indexers (None without)."""
        return self.experts.weights(), None if self.expert_indexers is None else self.expert_indexers.weights()

    def expert_fn(self, w, x_btd: jax.Array, measure: bool = False) -> tuple[jax.Array, list]:
        """One expert's work on its slice, and its indexer stats; `expert_parallel` runs it for every expert."""
        return expert_stack_forward(w, x_btd, block_step(self.cfg, self.cfg.expert_heads, self.expert_spec, measure))

    def __call__(self, x_btd: jax.Array, measure: bool = False) -> tuple[jax.Array, Aux]:
        cfg = self.cfg
        x_btd, short_bsd, slices_besw, stats = self.expert_input(x_btd, measure)
        if cfg.slice_experts > 1:
            out_besw, aux = slice_routing.routed_expert_stage(cfg, self.experts, self.slice_routers, slices_besw)
        else:
            expert_fn = lambda w, x: self.expert_fn(w, x, measure)  # noqa: E731
            out_besw, expert_stats = expert_parallel(expert_fn, self.expert_weights(), slices_besw)
            # per-expert stats come back as [b, e]; a layer's number counts the pre-expert blocks
            stats |= {cfg.pre_layers + i: layer_stats for i, layer_stats in enumerate(expert_stats)}
            aux = sparse_aux(stats) if stats else _no_aux()
        b, s, d = short_bsd.shape
        delta_bsd = out_besw.transpose(0, 2, 1, 3).reshape(b, s, d) - short_bsd
        if cfg.recombine == "mix":
            delta_bsd = mix_slices(delta_bsd, self.w_mix_dd[...])
        return x_btd + upsample(delta_bsd, cfg.shorten), aux


TRUNKS = {"dense": DenseTrunk, "topk": TopKTrunk, "sectional": SectionalTrunk}
