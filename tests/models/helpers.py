"""Small configs and inputs shared by the model tests."""

import dataclasses

import jax
import numpy as np
from flax import nnx

from smoe import sharding
from smoe.config import MeshConfig, ModelConfig

TINY = ModelConfig(kind="sectional", d_model=32, n_layers=3, n_heads=2, ffn_mult=2, seq_len=16, n_experts=4,
                   expert_heads=2, pre_layers=1, shorten=2, recombine="mix", top_k=2, capacity_factor=1.0)


def tiny(**changes) -> ModelConfig:
    return dataclasses.replace(TINY, **changes)


def activations(cfg: ModelConfig, batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.asarray(jax.random.normal(jax.random.key(seed), (batch, cfg.seq_len, cfg.d_model)))


def tokens(cfg: ModelConfig, batch: int = 8, seed: int = 0) -> np.ndarray:
    return np.asarray(jax.random.randint(jax.random.key(seed), (batch, cfg.seq_len + 1), 0, cfg.vocab_size))


# The fast paths run compiled, as they do in training; eager dispatch would dominate the test time.
trunk_forward = nnx.jit(lambda model, x_btd: model.trunk(x_btd))
lm_logits = nnx.jit(lambda model, tokens_bt: model(tokens_bt)[0])


def compiled_on_mesh(fn, shape: tuple[int, int], *states_and_window):
    """(fn lowered and compiled on a (data, expert) mesh of `shape`, its arguments placed there):
    nnx states sharded as their metadata says, the last argument, a token window, over the batch."""
    mesh = sharding.make_mesh(MeshConfig(*shape))
    *states, window = states_and_window
    args = [jax.device_put(nnx.to_pure_dict(state), sharding.param_shardings(state, mesh)) for state in states]
    args.append(jax.device_put(window, sharding.batch_sharding(mesh)))
    with jax.set_mesh(mesh):
        return fn.lower(*args).compile(), args
