"""The causal byte-level LM skeleton every model shares: embeddings, a trunk, final norm, LM head."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from smoe.config import ModelConfig
from smoe.models.layers import INIT_STD, param, rms_norm
from smoe.models.trunks import TRUNKS


class LanguageModel(nnx.Module):
    def __init__(self, cfg: ModelConfig, rng: np.random.Generator):
        self.cfg = cfg
        self.embed_vd = param(rng, (cfg.vocab_size, cfg.d_model), (None, None), INIT_STD)
        self.pos_td = param(rng, (cfg.seq_len, cfg.d_model), (None, None), INIT_STD)
        self.trunk = TRUNKS[cfg.kind](cfg, rng)
        self.norm_out_d = param(rng, (cfg.d_model,), (None,), None)
        self.head_dv = param(rng, (cfg.d_model, cfg.vocab_size), (None, None), INIT_STD)

    def embed(self, tokens_bt: jax.Array) -> jax.Array:
        return self.embed_vd[...][tokens_bt] + self.pos_td[...][:tokens_bt.shape[1]]

    def __call__(self, tokens_bt: jax.Array, measure: bool = False) -> tuple[jax.Array, dict]:
        """`measure` adds the eval-only metrics (the indexer recall), too costly for every train step."""
        x_btd, aux = self.trunk(self.embed(tokens_bt), measure)
        logits_btv = rms_norm(x_btd, self.norm_out_d[...]) @ self.head_dv[...]
        return logits_btv, aux


def make_model(cfg: ModelConfig, seed: int) -> LanguageModel:
    return LanguageModel(cfg, np.random.default_rng(seed))


def for_compute(model: LanguageModel) -> LanguageModel:
    """The model its forward runs: nnx.Param leaves cast to model.compute_dtype, everything else (the
    routers' float32 state) as is. Differentiating through the cast gives float32 gradients of the
    float32 parameters, which the optimizer keeps; float32 returns the model itself, untouched."""
    if model.cfg.compute_dtype == "float32":
        return model
    dtype = jnp.dtype(model.cfg.compute_dtype)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return nnx.merge(graphdef, jax.tree.map(lambda a: a.astype(dtype), params), rest)


def lm_loss(model: LanguageModel, window_bt: jax.Array, measure: bool = False) -> tuple[jax.Array, dict]:
    """Next-byte cross-entropy (nats) on windows of seq_len+1 tokens, plus the trunk's aux loss."""
    inputs_bt, targets_bt = window_bt[:, :-1], window_bt[:, 1:]
    logits_btv, aux = model(inputs_bt, measure)
    ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_btv.astype(jnp.float32), targets_bt))
    return ce + aux["aux_loss"], {"ce": ce, "aux_loss": aux["aux_loss"], **aux["metrics"]}


def count_params(model: nnx.Module) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))
