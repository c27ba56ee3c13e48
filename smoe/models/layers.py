"""Pure transformer-block math shared by every model, plus the module that holds one block's weights.

The same `block_forward` runs a dense block at width d and a sectional expert at width d/E (under
`jax.vmap` over stacked expert weights), so "sectional with E=1 equals dense" holds by construction.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

INIT_STD = 0.02


class BlockWeights(NamedTuple):
    norm_attn_d: jax.Array
    w_qkv_dk: jax.Array  # k = 3 * d, laid out [q | k | v]
    w_o_dd: jax.Array
    norm_ffn_d: jax.Array
    w_in_df: jax.Array
    w_out_fd: jax.Array


def rms_norm(x_btd: jax.Array, scale_d: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Computed in float32 whatever the activations' dtype (a bf16 mean of squares loses the scale)."""
    x32_btd = x_btd.astype(jnp.float32)
    variance = jnp.mean(jnp.square(x32_btd), axis=-1, keepdims=True)
    return (x32_btd * jax.lax.rsqrt(variance + eps) * scale_d).astype(x_btd.dtype)


def split_heads(x_btd: jax.Array, w_qkv_dk: jax.Array, n_heads: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    b, t, d = x_btd.shape
    qkv = (x_btd @ w_qkv_dk).reshape(b, t, 3, n_heads, d // n_heads)
    return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]


def attention_probs(q_bqhk: jax.Array, k_bshk: jax.Array, allowed_qs: jax.Array) -> jax.Array:
    """Softmax of scaled q.k over the keys `allowed_qs` (broadcast against [b, h, q, s]) lets through.

    Scores and softmax in float32; the probabilities come back in q's dtype for the matmul with v.
    """
    head_dim = q_bqhk.shape[-1]
    scores_bhqs = jnp.einsum("bqhk,bshk->bhqs", q_bqhk, k_bshk, preferred_element_type=jnp.float32)
    scores_bhqs = scores_bhqs / jnp.sqrt(head_dim).astype(jnp.float32)
    scores_bhqs = jnp.where(allowed_qs, scores_bhqs, jnp.finfo(scores_bhqs.dtype).min)
    return jax.nn.softmax(scores_bhqs, axis=-1).astype(q_bqhk.dtype)


def causal_attention(x_btd: jax.Array, w_qkv_dk: jax.Array, w_o_dd: jax.Array, n_heads: int,
                     impl: str = "reference") -> jax.Array:
    """`impl` reference: the hand-written softmax(q.k)v, the oracle; xla or cudnn: the same attention
    by `jax.nn.dot_product_attention` (cudnn is flash attention on an NVIDIA GPU)."""
    b, t, d = x_btd.shape
    q_bthk, k_bthk, v_bthk = split_heads(x_btd, w_qkv_dk, n_heads)
    if impl == "reference":
        probs_bhqs = attention_probs(q_bthk, k_bthk, jnp.tril(jnp.ones((t, t), dtype=bool)))
        out_bthk = jnp.einsum("bhqs,bshk->bqhk", probs_bhqs, v_bthk)
    else:
        out_bthk = jax.nn.dot_product_attention(q_bthk, k_bthk, v_bthk, is_causal=True, implementation=impl)
    return out_bthk.reshape(b, t, d) @ w_o_dd


def ffn(x_btd: jax.Array, w_in_df: jax.Array, w_out_fd: jax.Array) -> jax.Array:
    """gelu(x W_in) W_out, with its backward written out (the same values autodiff gives).

    Left to autodiff, XLA's CPU backend computes the gelu backward twice, once fused with the
    transpose the W_in gradient's matmul asks for, which writes with a stride: those fusions took
    a fifth of the dense train step at the default size (`benchmarks/sectional_speed.py --profile dense`).
    Written out, the gelu backward runs once, in the activations' own layout, and each weight
    gradient is one contraction over all tokens.
    """
    return _ffn(x_btd, _vary_like(w_in_df, x_btd), _vary_like(w_out_fd, x_btd))


def _vary_like(w: jax.Array, x: jax.Array) -> jax.Array:
    """Inside a shard_map, `w` marked as varying over the mesh axes `x` varies over, so the weight
    gradients (sums over x's tokens) have w's type; the cast's transpose sums them over those
    axes, the reduction autodiff would insert for the plain matmul."""
    axes = tuple(sorted(jax.typeof(x).mat.varying - jax.typeof(w).mat.varying))
    return jax.lax.pcast(w, axes, to="varying") if axes else w


@jax.custom_vjp
def _ffn(x_btd: jax.Array, w_in_df: jax.Array, w_out_fd: jax.Array) -> jax.Array:
    return jax.nn.gelu(x_btd @ w_in_df) @ w_out_fd


def _ffn_forward(x_btd, w_in_df, w_out_fd):
    pre_btf = x_btd @ w_in_df
    return jax.nn.gelu(pre_btf) @ w_out_fd, (x_btd, w_in_df, w_out_fd, pre_btf)


def _ffn_backward(saved, grad_btd):
    x_btd, w_in_df, w_out_fd, pre_btf = saved
    act_btf, gelu_vjp = jax.vjp(jax.nn.gelu, pre_btf)
    grad_pre_btf = gelu_vjp(grad_btd @ w_out_fd.T)[0]
    # summed over every leading (token) axis, without reshaping: under vmap a reshape would copy
    grad_w_in_df = jnp.einsum("...d,...f->df", x_btd, grad_pre_btf)
    grad_w_out_fd = jnp.einsum("...f,...d->fd", act_btf, grad_btd)
    return grad_pre_btf @ w_in_df.T, grad_w_in_df, grad_w_out_fd


_ffn.defvjp(_ffn_forward, _ffn_backward)


def attention_sublayer(norm_d: jax.Array, w_qkv_dk: jax.Array, w_o_dd: jax.Array, x_btd: jax.Array,
                       n_heads: int, impl: str = "reference") -> jax.Array:
    return x_btd + causal_attention(rms_norm(x_btd, norm_d), w_qkv_dk, w_o_dd, n_heads, impl)


def block_forward(w: BlockWeights, x_btd: jax.Array, n_heads: int, impl: str = "reference") -> jax.Array:
    """Pre-norm block: x + attn(norm(x)), then + ffn(norm(.))."""
    x_btd = attention_sublayer(w.norm_attn_d, w.w_qkv_dk, w.w_o_dd, x_btd, n_heads, impl)
    return x_btd + ffn(rms_norm(x_btd, w.norm_ffn_d), w.w_in_df, w.w_out_fd)


def rematerialised(fn: Callable, remat: str) -> Callable:
    """`fn` under `jax.checkpoint` for remat "block": its activations are recomputed in the backward
    pass instead of kept, trading a second forward of the block for memory on long sequences."""
    return jax.checkpoint(fn) if remat == "block" else fn


def mix_slices(delta_bsd: jax.Array, w_mix_dd: jax.Array) -> jax.Array:
    """The sectional recombination: the expert update plus its projection across slices. Written as
    identity + W with W initialised to zero, so a mixed model starts as its unmixed self and weight
    decay pulls towards no mixing, instead of a small-init W shrinking the whole update."""
    return delta_bsd + delta_bsd @ w_mix_dd


def param(rng: np.random.Generator, shape: tuple[int, ...], axes: tuple[str | None, ...], std: float | None) -> nnx.Param:
    """A parameter whose sharding names travel as metadata; `std=None` means a norm scale of ones,
    `std=0.0` zeros (neither draws from `rng`, so adding one leaves every other weight unchanged).

    Weights come from a seeded numpy generator: jax.random compiles once per distinct shape (~0.4 s
    each on CPU), which made building a model take longer than training it for a few steps.
    Eager sharding is off because modules are built before a mesh exists; `smoe.sharding` places them.
    """
    return nnx.Param(jnp.asarray(_draw(rng, shape, std)), out_sharding=axes, eager_sharding=False)


def _draw(rng: np.random.Generator, shape: tuple[int, ...], std: float | None) -> np.ndarray:
    if std is None or std == 0.0:
        return np.full(shape, float(std is None), np.float32)
    return (std * rng.standard_normal(shape)).astype(np.float32)


class BlockParams(nnx.Module):
    """One transformer block's weights, optionally with leading stacked axes (e.g. [expert, layer])."""

    def __init__(self, d: int, d_ff: int, n_layers_total: int, rng: np.random.Generator,
                 lead_shape: tuple[int, ...] = (), lead_axes: tuple[str | None, ...] = (), ffn_candidates: int = 1):
        # GPT-2 style: residual-branch outputs scaled down with depth so the stream's variance stays O(1).
        out_std = INIT_STD / (2 * n_layers_total) ** 0.5
        # ffn_candidates > 1: the FFN weights gain a leading candidate axis [m, ...], the FFNs a router
        # picks among (smoe.models.slice_routing); 1 draws exactly the plain block
        ffn_lead = (ffn_candidates,) if ffn_candidates > 1 else ()
        shapes = {"norm_attn_d": (d,), "w_qkv_dk": (d, 3 * d), "w_o_dd": (d, d), "norm_ffn_d": (d,),
                  "w_in_df": ffn_lead + (d, d_ff), "w_out_fd": ffn_lead + (d_ff, d)}
        stds = {"norm_attn_d": None, "w_qkv_dk": INIT_STD, "w_o_dd": out_std, "norm_ffn_d": None,
                "w_in_df": INIT_STD, "w_out_fd": out_std}
        # Drawn block by block over the leading axes, so a stack of L blocks holds exactly the
        # weights L separate blocks get from the same generator (sectional E=1 inits as dense).
        lead = tuple(lead_shape)
        drawn = [{name: _draw(rng, shapes[name], stds[name]) for name in BlockWeights._fields}
                 for _ in np.ndindex(*lead)]
        for name in BlockWeights._fields:
            value = np.stack([block[name] for block in drawn]).reshape(lead + shapes[name])
            axes = tuple(lead_axes) + (None,) * len(shapes[name])
            setattr(self, name, nnx.Param(jnp.asarray(value), out_sharding=axes, eager_sharding=False))

    def weights(self) -> BlockWeights:
        return BlockWeights(*(getattr(self, name)[...] for name in BlockWeights._fields))
