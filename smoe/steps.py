"""Jitted train and eval steps over a device mesh: functional NNX (graphdef + pure param dict) + optax."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from smoe import sharding
from smoe.config import RunConfig, TrainConfig
from smoe.models.adaptive_routing import RouterState
from smoe.models.lm import LanguageModel, for_compute, lm_loss, make_model
from smoe.training_stages import stage_model_config, stage_optimizer


def learning_rate(cfg: TrainConfig) -> optax.Schedule:
    """Linear warmup, cosine decay to a tenth of the peak over `schedule_steps`, then that rate."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.schedule_steps, end_value=0.1 * cfg.learning_rate)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    schedule = learning_rate(cfg)
    # Norm scales are not decayed: shrinking them towards zero only fights the normalisation.
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                       optax.adamw(schedule, b1=0.9, b2=0.95, weight_decay=cfg.weight_decay, mask=decay_mask))


@dataclass
class Programs:
    """Everything a run needs on the mesh: initial state, its shardings and the compiled steps.

    `params` is the model's whole state: its nnx.Param leaves, which the optimizer trains, and any
    RouterState leaves (balance bias, controller), which only the train step's forward advances.
    """

    mesh: Mesh
    graphdef: Any
    params: dict
    opt_state: Any
    train_step: Callable
    eval_step: Callable

    def state(self) -> dict:
        return {"params": self.params, "opt_state": self.opt_state}


def _pick(tree: dict, like: dict) -> dict:
    """The part of nested dict `tree` at the paths of `like`."""
    return {k: _pick(tree[k], v) if isinstance(v, dict) else tree[k] for k, v in like.items()}


def _merge(tree: dict, other: dict) -> dict:
    return tree | {k: _merge(tree[k], v) if isinstance(v, dict) and k in tree else v for k, v in other.items()}


def build(cfg: RunConfig, mesh: Mesh) -> Programs:
    model: LanguageModel = make_model(stage_model_config(cfg), cfg.train.seed)
    graphdef, model_state = nnx.split(model)
    param_like = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    router_like = nnx.to_pure_dict(nnx.state(model, RouterState))
    state_sh = sharding.param_shardings(model_state, mesh)
    params = jax.device_put(nnx.to_pure_dict(model_state), state_sh)
    tx = stage_optimizer(cfg, make_optimizer(cfg.train), param_like)
    with jax.set_mesh(mesh):
        opt_state = jax.jit(tx.init)(_pick(params, param_like))
    opt_sh = jax.tree.map(lambda a: a.sharding, opt_state)
    batch_sh, repl = sharding.batch_sharding(mesh), sharding.replicated(mesh)

    def loss_fn(params, router, window_bt, measure=False):
        model = for_compute(nnx.merge(graphdef, params, router))
        loss, metrics = lm_loss(model, window_bt, measure)
        return loss, (metrics, nnx.to_pure_dict(nnx.state(model, RouterState)))

    def train_step(state, opt_state, window_bt):
        params, router = _pick(state, param_like), _pick(state, router_like)
        (loss, (metrics, router)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, router, window_bt)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        grad_norm = optax.tree.norm(grads)
        # Checked on device in the same program, so the host sees whether the state it may checkpoint
        # is finite without fetching the parameters.
        params_finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)]))
        metrics = metrics | {"loss": loss, "grad_norm": grad_norm, "params_finite": params_finite}
        return _merge(params, router), opt_state, metrics

    def eval_step(state, window_bt):
        """The cross-entropy and the eval-only metrics (`lm_loss(measure=True)`: the indexer recall, and
        its KL beside it)."""
        metrics = loss_fn(_pick(state, param_like), _pick(state, router_like), window_bt, measure=True)[1][0]
        return {name: value for name, value in metrics.items() if name == "ce" or "/indexer_" in name}

    jit_train = jax.jit(train_step, in_shardings=(state_sh, opt_sh, batch_sh),
                        out_shardings=(state_sh, opt_sh, repl), donate_argnums=(0, 1))
    jit_eval = jax.jit(eval_step, in_shardings=(state_sh, batch_sh), out_shardings=repl)
    return Programs(mesh, graphdef, params, opt_state, _under_mesh(jit_train, mesh), _under_mesh(jit_eval, mesh))


def _under_mesh(fn: Callable, mesh: Mesh) -> Callable:
    """The expert stage reads the mesh from context (shard_map), so every call traces under it."""

    def call(*args):
        with jax.set_mesh(mesh):
            return fn(*args)

    call.lower = lambda *args: _lower_under_mesh(fn, mesh, *args)
    return call


def _lower_under_mesh(fn, mesh, *args):
    with jax.set_mesh(mesh):
        return fn.lower(*args)

