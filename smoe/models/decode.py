"""Incremental decoding with a KV cache for the dense LM and the sectional LM (shorten = 1).

The model is flattened into a `Net`: every layer is one `BlockWeights` with a leading group axis g
(g = 1 for a full-width block, g = E for a sectional expert layer, whose E experts run side by side
on their d/E slices). One function, `forward`, runs any window of tokens at positions pos.. against a
static-shape cache: a full forward is pos = 0 with a cache as long as the window, prefill is the
same on a longer cache, and a decode step is a window of one token.

Layers may carry per-example weights (a leading batch axis after g, as gathered sparse layers do)
and per-example head/neuron scales (masks); `smoe.sparsity` builds those, this module only runs them.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from smoe.errors import UserError
from smoe.models.layers import BlockWeights, mix_slices, rms_norm


class Net(NamedTuple):
    embed_vd: jax.Array
    pos_td: jax.Array
    layers: tuple  # of BlockWeights, each leaf with a leading group axis g
    norm_out_d: jax.Array
    head_dv: jax.Array
    w_mix_dd: jax.Array | None


class Spec(NamedTuple):
    """The static facts `forward` needs: which layers are expert layers and their head counts."""

    sectional: bool
    pre_layers: int  # layers before the expert stage (all layers for the dense LM)
    n_heads: tuple[int, ...]  # heads per group, per layer (after any gathering)


class LayerTaps(NamedTuple):
    """What importance criteria read: head outputs before W_o, the FFN input and pre-activation."""

    heads_bgthk: jax.Array
    ffn_in_bgtd: jax.Array
    pre_bgtf: jax.Array
    x_in_bgtd: jax.Array | None = None  # the layer's input (DejaVu's predictor input)


class Probes(NamedTuple):
    """Zero tensors added to the head outputs and FFN pre-activations: their gradient is dL/d(tap)."""

    heads: tuple
    pre: tuple


class Selection(NamedTuple):
    """One layer's sparse execution: possibly gathered weights, their head count, optional 0/1 scales."""

    weights: BlockWeights
    n_heads: int
    head_scale_bgh: jax.Array | None
    neuron_scale_bgf: jax.Array | None


def net_from_model(model) -> tuple[Net, Spec]:
    cfg = model.cfg
    if cfg.kind == "topk":
        raise UserError("model.kind: decoding and sparsity support the dense and sectional models, got 'topk'")
    if cfg.slice_experts > 1:
        raise UserError("model.slice_experts: decoding and sparsity support sectional slices with one FFN; "
                        "set slice_experts: 1")
    if cfg.kind == "sectional" and cfg.shorten != 1:
        raise UserError(f"model.shorten: KV-cache decoding and sparsity support shorten=1 only, got {cfg.shorten}")
    add_group = lambda w: jax.tree.map(lambda a: a[None], w)  # noqa: E731
    if cfg.kind == "dense":
        layers = tuple(add_group(block.weights()) for block in model.trunk.blocks)
        return (Net(model.embed_vd[...], model.pos_td[...], layers, model.norm_out_d[...], model.head_dv[...], None),
                Spec(False, cfg.n_layers, (cfg.n_heads,) * cfg.n_layers))
    trunk = model.trunk
    experts = trunk.experts.weights()
    layers = tuple(add_group(block.weights()) for block in trunk.pre_blocks) + tuple(
        jax.tree.map(lambda a, i=layer: a[:, i], experts) for layer in range(cfg.expert_layers))
    mix = trunk.w_mix_dd[...] if cfg.recombine == "mix" else None
    heads = (cfg.n_heads,) * cfg.pre_layers + (cfg.expert_heads,) * cfg.expert_layers
    return Net(model.embed_vd[...], model.pos_td[...], layers, model.norm_out_d[...], model.head_dv[...], mix), \
        Spec(True, cfg.pre_layers, heads)


def init_cache(net: Net, spec: Spec, batch: int, length: int, kept_heads: tuple[int, ...] | None = None) -> tuple:
    """Per layer (k, v), each [b, g, length, heads, head_dim]; `kept_heads` sizes it for gathered layers."""
    cache = []
    for layer, (w, heads) in enumerate(zip(net.layers, spec.n_heads)):
        groups, head_dim = w.w_qkv_dk.shape[0], w.w_qkv_dk.shape[-1] // (3 * heads)
        shape = (batch, groups, length, heads if kept_heads is None else kept_heads[layer], head_dim)
        cache.append((jnp.zeros(shape, w.w_qkv_dk.dtype), jnp.zeros(shape, w.w_qkv_dk.dtype)))
    return tuple(cache)


def _attend(q_bqhk: jax.Array, k_bshk: jax.Array, v_bshk: jax.Array, pos) -> jax.Array:
    t, s, head_dim = q_bqhk.shape[1], k_bshk.shape[1], q_bqhk.shape[-1]
    scores_bhqs = jnp.einsum("bqhk,bshk->bhqs", q_bqhk, k_bshk) / jnp.sqrt(head_dim).astype(q_bqhk.dtype)
    # Query i sits at position pos + i and sees cache slots 0..pos+i; later slots are empty or future.
    allowed_qs = jnp.arange(s)[None, :] <= pos + jnp.arange(t)[:, None]
    scores_bhqs = jnp.where(allowed_qs, scores_bhqs, jnp.finfo(scores_bhqs.dtype).min)
    return jnp.einsum("bhqs,bshk->bqhk", jax.nn.softmax(scores_bhqs, axis=-1), v_bshk)


def _group_block(w: BlockWeights, x_btd, k_cache, v_cache, head_scale_bh, neuron_scale_bf, probe_h, probe_f,
                 pos, n_heads: int):
    """One group's pre-norm block; weights are shared [d, n] or per example [b, d, n] (matmul broadcasts)."""
    b, t, _ = x_btd.shape
    qkv = (rms_norm(x_btd, w.norm_attn_d) @ w.w_qkv_dk).reshape(b, t, 3, n_heads, -1)
    k_cache = jax.lax.dynamic_update_slice_in_dim(k_cache, qkv[:, :, 1], pos, axis=1)
    v_cache = jax.lax.dynamic_update_slice_in_dim(v_cache, qkv[:, :, 2], pos, axis=1)
    heads_bthk = _attend(qkv[:, :, 0], k_cache, v_cache, pos)
    if probe_h is not None:
        heads_bthk = heads_bthk + probe_h
    if head_scale_bh is not None:
        heads_bthk = heads_bthk * head_scale_bh[:, None, :, None]
    x_btd = x_btd + heads_bthk.reshape(b, t, -1) @ w.w_o_dd
    ffn_in_btd = rms_norm(x_btd, w.norm_ffn_d)
    pre_btf = ffn_in_btd @ w.w_in_df
    if probe_f is not None:
        pre_btf = pre_btf + probe_f
    hidden_btf = jax.nn.gelu(pre_btf)
    if neuron_scale_bf is not None:
        hidden_btf = hidden_btf * neuron_scale_bf[:, None, :]
    x_btd = x_btd + hidden_btf @ w.w_out_fd
    return x_btd, (k_cache, v_cache), LayerTaps(heads_bthk, ffn_in_btd, pre_btf)


def _layer(sel: Selection, x_bgtd, kv, probe_h, probe_f, pos):
    run = jax.vmap(lambda *a: _group_block(*a, pos=pos, n_heads=sel.n_heads), in_axes=(0, 1, 1, 1, 1, 1, 1, 1),
                   out_axes=(1, 1, 1))
    return run(sel.weights, x_bgtd, kv[0], kv[1], sel.head_scale_bgh, sel.neuron_scale_bgf, probe_h, probe_f)


Plan = Callable[[int, jax.Array], Selection]


def embed(net: Net, tokens_bt: jax.Array, pos=0) -> jax.Array:
    return net.embed_vd[tokens_bt] + jax.lax.dynamic_slice_in_dim(net.pos_td, pos, tokens_bt.shape[1], axis=0)


def trunk(net: Net, spec: Spec, x_btd: jax.Array, cache: tuple, pos=0, plan: Plan | None = None,
          probes: Probes | None = None, upto: int | None = None):
    """Layers 0..upto-1 (all by default) on the residual stream x[b, t, d]: (x, new cache, taps).

    `plan(layer, x_bgtd)` may replace a layer's execution (masked or gathered) given its input.
    """
    b, t, d = x_btd.shape
    x_bgtd, short_btd = x_btd[:, None], x_btd
    new_cache, taps = [], []
    for layer, w in enumerate(net.layers[:upto]):
        if spec.sectional and layer == spec.pre_layers:
            short_btd = x_bgtd[:, 0]
            groups = w.w_qkv_dk.shape[0]
            x_bgtd = short_btd.reshape(b, t, groups, d // groups).transpose(0, 2, 1, 3)
        sel = plan(layer, x_bgtd) if plan is not None else Selection(w, spec.n_heads[layer], None, None)
        probe_h, probe_f = (probes.heads[layer], probes.pre[layer]) if probes is not None else (None, None)
        x_in_bgtd = x_bgtd
        x_bgtd, kv, tap = _layer(sel, x_bgtd, cache[layer], probe_h, probe_f, pos)
        new_cache.append(kv)
        taps.append(tap._replace(x_in_bgtd=x_in_bgtd))
    if spec.sectional and len(new_cache) > spec.pre_layers:
        # The expert stage's update to the pre-expert stream, optionally mixed across slices.
        delta_btd = x_bgtd.transpose(0, 2, 1, 3).reshape(b, t, d) - short_btd
        if net.w_mix_dd is not None:
            delta_btd = mix_slices(delta_btd, net.w_mix_dd)
        x_btd = short_btd + delta_btd
    else:
        x_btd = x_bgtd[:, 0]
    return x_btd, tuple(new_cache), tuple(taps)


def forward(net: Net, spec: Spec, tokens_bt: jax.Array, cache: tuple, pos=0, plan: Plan | None = None,
            probes: Probes | None = None):
    """Logits [b, t, V] for tokens at positions pos..pos+t-1, the updated cache and per-layer taps."""
    x_btd, cache, taps = trunk(net, spec, embed(net, tokens_bt, pos), cache, pos, plan, probes)
    return rms_norm(x_btd, net.norm_out_d) @ net.head_dv, cache, taps


def full_logits(net: Net, spec: Spec, tokens_bt: jax.Array, plan: Plan | None = None,
                kept_heads: tuple[int, ...] | None = None) -> jax.Array:
    """The whole window at once: a cache exactly as long as the window makes attention plain causal."""
    cache = init_cache(net, spec, tokens_bt.shape[0], tokens_bt.shape[1], kept_heads)
    return forward(net, spec, tokens_bt, cache, 0, plan)[0]


def continuation_ce(logits_btv: jax.Array, targets_bt: jax.Array, start: int) -> jax.Array:
    """Mean next-byte cross-entropy (nats) over positions start.. of the window."""
    ce_bt = optax.softmax_cross_entropy_with_integer_labels(logits_btv[:, start:].astype(jnp.float32),
                                                            targets_bt[:, start:])
    return jnp.mean(ce_bt)
