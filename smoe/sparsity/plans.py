"""Plans: per-layer execution for `decode.forward`, from scores known up front or predicted per layer."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from smoe.models import decode
from smoe.sparsity.layout import Layout
from smoe.sparsity.select import select_layer


def unflatten(layout: Layout, heads_bn: jax.Array, neurons_bn: jax.Array) -> tuple:
    """Flat [b, all heads], [b, all neurons] -> per layer ([b, g, h], [b, g, f])."""
    out, h0, f0 = [], 0, 0
    for layer in layout.layers:
        nh, nf = layer.groups * layer.heads, layer.groups * layer.neurons
        out.append((heads_bn[:, h0:h0 + nh].reshape(-1, layer.groups, layer.heads),
                    neurons_bn[:, f0:f0 + nf].reshape(-1, layer.groups, layer.neurons)))
        h0, f0 = h0 + nh, f0 + nf
    return tuple(out)


def kept_heads(spec: decode.Spec, counts, mode: str) -> tuple[int, ...]:
    """Heads each layer's cache holds: fewer only where gathering drops them."""
    return tuple(k_h if mode == "gather" else h for h, (k_h, _) in zip(spec.n_heads, counts))


def fixed_plan(net: decode.Net, spec: decode.Spec, scores, counts, mode: str) -> decode.Plan:
    """Every layer's selection from scores computed before the forward (ShadowLLM, oracle)."""
    def plan(layer: int, _x_bgtd):
        k_h, k_f = counts[layer]
        heads, neurons = scores[layer]
        return select_layer(net.layers[layer], spec.n_heads[layer], heads, neurons, k_h, k_f, mode)
    return plan


def per_layer_plan(net: decode.Net, spec: decode.Spec, layout: Layout, predict_layer, at: int, counts,
                   mode: str) -> decode.Plan:
    """DejaVu-style: layer l's selection from a predictor on that layer's own input at position `at`."""
    def plan(layer: int, x_bgtd):
        b, g = x_bgtd.shape[:2]
        x_bd = x_bgtd[:, :, at].reshape(b, -1)
        heads_bn, neurons_bn = predict_layer(layer, x_bd)
        info = layout.layers[layer]
        k_h, k_f = counts[layer]
        return select_layer(net.layers[layer], spec.n_heads[layer], heads_bn.reshape(b, g, info.heads),
                            neurons_bn.reshape(b, g, info.neurons), k_h, k_f, mode)
    return plan


def shadow_features(net: decode.Net, spec: decode.Spec, tokens_bt: jax.Array, at: int) -> jax.Array:
    """The ShadowLLM predictor input [b, d] at position `at`: layer 0's head outputs before W_o (dense LM),
    or the pre-expert stage's output (sectional LM: the representation every expert slice is cut from)."""
    b, t = tokens_bt.shape
    x_btd = decode.embed(net, tokens_bt)
    upto = spec.pre_layers if spec.sectional else 1
    cache = decode.init_cache(net._replace(layers=net.layers[:upto]), spec, b, t)
    x_btd, _, taps = decode.trunk(net, spec, x_btd, cache, upto=upto)
    return x_btd[:, at] if spec.sectional else taps[0].heads_bgthk[:, 0, at].reshape(b, -1)


def layer_inputs(net: decode.Net, spec: decode.Spec, tokens_bt: jax.Array, at: int) -> jax.Array:
    """The dense model's input to every layer at position `at`, [b, L, d] (DejaVu's predictor inputs)."""
    b, t = tokens_bt.shape
    _, _, taps = decode.forward(net, spec, tokens_bt, decode.init_cache(net, spec, b, t))
    return jnp.stack([tap.x_in_bgtd[:, :, at].reshape(b, -1) for tap in taps], axis=1)
