"""Per-input importance of every head and FFN neuron from one forward+backward of the LM loss.

Criteria (ShadowLLM `lm_eval/base.py`), per example, A = a head's output before W_o, G = dL/dA:
* plainact: heads sum_t |sum_i A*G|; neurons sum_in |W_in * dL/dW_in| (per-example weight gradient
  dL/dW_in[in, n] = sum_t ffn_in[t, in] * dL/dpre[t, n]).
* l2norm (DejaVu-style): heads ||A|| over positions and head dims; neurons ||gelu(pre)|| over positions.
* fisher: heads sum_i mean_t (A*G)^2; neurons mean_t (pre * dL/dpre)^2.
The loss is the sum over examples of each one's mean next-byte cross-entropy, so the gradient at an
example's own activations is that example's gradient: no vmap needed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from smoe.models import decode
from smoe.sparsity.layout import CRITERIA


def _zero_probes(net: decode.Net, spec: decode.Spec, batch: int, length: int) -> decode.Probes:
    heads, pre = [], []
    for w, n_heads in zip(net.layers, spec.n_heads):
        groups, d, qkv = w.w_qkv_dk.shape[0], w.w_qkv_dk.shape[-2], w.w_qkv_dk.shape[-1]
        heads.append(jnp.zeros((batch, groups, length, n_heads, qkv // (3 * n_heads)), w.w_qkv_dk.dtype))
        pre.append(jnp.zeros((batch, groups, length, w.w_in_df.shape[-1]), w.w_in_df.dtype))
    return decode.Probes(tuple(heads), tuple(pre))


def importance(net: decode.Net, spec: decode.Spec, window_bt: jax.Array, criterion: str):
    """Per layer ([b, g, heads], [b, g, neurons]) scores for `criterion`."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    inputs_bt, targets_bt = window_bt[:, :-1], window_bt[:, 1:]
    b, t = inputs_bt.shape

    def loss(probes):
        logits, _, taps = decode.forward(net, spec, inputs_bt, decode.init_cache(net, spec, b, t), 0, probes=probes)
        ce_bt = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets_bt)
        return jnp.sum(jnp.mean(ce_bt, axis=1)), taps

    grads, taps = jax.grad(loss, has_aux=True)(_zero_probes(net, spec, b, t))
    scores = []
    for w, tap, g_heads, g_pre in zip(net.layers, taps, grads.heads, grads.pre):
        a = tap.heads_bgthk
        if criterion == "plainact":
            heads = jnp.abs(jnp.sum(a * g_heads, axis=-1)).sum(axis=2)
            grad_w_in = jnp.einsum("bgti,bgtn->bgin", tap.ffn_in_bgtd, g_pre)
            neurons = jnp.abs(w.w_in_df[None] * grad_w_in).sum(axis=2)
        elif criterion == "l2norm":
            heads = jnp.sqrt(jnp.sum(a * a, axis=(2, 4)))
            neurons = jnp.sqrt(jnp.sum(jnp.square(jax.nn.gelu(tap.pre_bgtf)), axis=2))
        else:
            heads = jnp.mean(jnp.square(a * g_heads), axis=2).sum(axis=-1)
            neurons = jnp.mean(jnp.square(tap.pre_bgtf * g_pre), axis=2)
        scores.append((heads, neurons))
    return tuple(scores)


def flatten(scores) -> tuple[jax.Array, jax.Array]:
    """Per-layer scores -> flat [b, all heads], [b, all neurons] in the layout's order."""
    heads = jnp.concatenate([h.reshape(h.shape[0], -1) for h, _ in scores], axis=1)
    neurons = jnp.concatenate([n.reshape(n.shape[0], -1) for _, n in scores], axis=1)
    return heads, neurons
