"""Jitted train and eval steps over a device mesh: functional NNX (graphdef + pure param dict) + optax."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import optax
from flax import nnx
from jax.sharding import Mesh

from smoe import sharding
from smoe.config import RunConfig, TrainConfig
from smoe.models.lm import LanguageModel, lm_loss, make_model
from smoe.training_stages import stage_model_config, stage_optimizer


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.steps, end_value=0.1 * cfg.learning_rate)
    # Norm scales are not decayed: shrinking them towards zero only fights the normalisation.
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                       optax.adamw(schedule, b1=0.9, b2=0.95, weight_decay=cfg.weight_decay, mask=decay_mask))


@dataclass
class Programs:
    """Everything a run needs on the mesh: initial state, its shardings and the compiled steps."""

    mesh: Mesh
    graphdef: Any
    params: dict
    opt_state: Any
    train_step: Callable
    eval_step: Callable

    def state(self) -> dict:
        return {"params": self.params, "opt_state": self.opt_state}


def build(cfg: RunConfig, mesh: Mesh) -> Programs:
    model: LanguageModel = make_model(stage_model_config(cfg), cfg.train.seed)
    graphdef, param_state = nnx.split(model, nnx.Param)
    param_sh = sharding.param_shardings(param_state, mesh)
    params = jax.device_put(nnx.to_pure_dict(param_state), param_sh)
    tx = stage_optimizer(cfg, make_optimizer(cfg.train), params)
    with jax.set_mesh(mesh):
        opt_state = jax.jit(tx.init)(params)
    opt_sh = jax.tree.map(lambda a: a.sharding, opt_state)
    batch_sh, repl = sharding.batch_sharding(mesh), sharding.replicated(mesh)

    def loss_fn(params, window_bt):
        return lm_loss(nnx.merge(graphdef, params), window_bt)

    def train_step(params, opt_state, window_bt):
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, window_bt)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, metrics | {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    def eval_step(params, window_bt):
        return loss_fn(params, window_bt)[1]["ce"]

    jit_train = jax.jit(train_step, in_shardings=(param_sh, opt_sh, batch_sh),
                        out_shardings=(param_sh, opt_sh, repl), donate_argnums=(0, 1))
    jit_eval = jax.jit(eval_step, in_shardings=(param_sh, batch_sh), out_shardings=repl)
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

