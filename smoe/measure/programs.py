"""The separately compiled programs timed for one point.

Every program is lowered and compiled once; `Program.run` calls that very executable, so the XLA
cost and memory numbers and the wall time describe the same code.

* train_step  - the whole training step (smoe.steps.build), state threaded through calls
* forward     - the loss forward pass on the mesh
* pre_expert  - sectional only: the trunk's `expert_input` (embedding, pre-expert blocks, pooling, slicing)
* experts     - sectional only: one device's expert block stack under vmap, no collectives
* exchange    - sectional only: the model's own `expert_parallel.exchange` alone, on the same buffer shape
* exchange_xK - the same exchange on a buffer K times larger (K in `payloads`), for latency vs bandwidth
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from smoe import sharding, steps
from smoe.config import RunConfig
from smoe.models.expert_parallel import exchange, per_expert
from smoe.models.lm import for_compute, lm_loss


@dataclass
class Program:
    compiled: jax.stages.Compiled
    run: Callable[[], Any]  # one call of the compiled program on prepared inputs


def exchange_program(scale: int) -> str:
    return "exchange" if scale == 1 else f"exchange_x{scale}"


def build_programs(cfg: RunConfig, payloads=(1,)) -> dict[str, Program]:
    mesh = sharding.make_mesh(cfg.mesh)
    built = steps.build(cfg, mesh)
    window = _window(cfg, mesh)
    programs = {"forward": _forward(built, window, mesh)}
    if cfg.model.kind == "sectional":
        programs["pre_expert"] = _pre_expert(built, window, mesh)
        programs["experts"] = _experts(built, cfg)
        for scale in sorted({1, *payloads}):
            programs[exchange_program(scale)] = _exchange(cfg, mesh, scale)
    programs["train_step"] = _train_step(built, window)
    return programs


def forward_program(cfg: RunConfig) -> Program:
    """The loss forward alone (what a serving benchmark times), without compiling a train step."""
    mesh = sharding.make_mesh(cfg.mesh)
    built = steps.build(cfg, mesh)
    return _forward(built, _window(cfg, mesh), mesh)


def _window(cfg: RunConfig, mesh: Mesh) -> jax.Array:
    rng = np.random.default_rng(cfg.train.seed)
    tokens = rng.integers(0, cfg.model.vocab_size, (cfg.train.batch_size, cfg.model.seq_len + 1), dtype=np.int32)
    return sharding.global_batch(tokens, mesh)


def _compile_under_mesh(fn: Callable, mesh: Mesh, *args) -> jax.stages.Compiled:
    with jax.set_mesh(mesh):
        return fn.lower(*args).compile()


def _train_step(built: steps.Programs, window: jax.Array) -> Program:
    compiled = built.train_step.lower(built.params, built.opt_state, window).compile()
    # A copy: donation would otherwise free the parameters the other programs keep calling with.
    state = [jax.tree.map(jnp.copy, built.params), jax.tree.map(jnp.copy, built.opt_state)]

    def run():
        # Donation invalidates the inputs, so each call consumes the previous call's outputs.
        state[0], state[1], metrics = compiled(state[0], state[1], window)
        return metrics

    return Program(compiled, run)


def train_step_program(cfg: RunConfig) -> Program:
    """The training step alone on cfg's mesh, for benchmarks that time only whole steps."""
    mesh = sharding.make_mesh(cfg.mesh)
    return _train_step(steps.build(cfg, mesh), _window(cfg, mesh))


def _param_shardings(built: steps.Programs) -> Any:
    return jax.tree.map(lambda a: a.sharding, built.params)


def _forward(built: steps.Programs, window: jax.Array, mesh: Mesh) -> Program:
    def forward(params, window_bt):
        return lm_loss(for_compute(nnx.merge(built.graphdef, params)), window_bt)[0]

    fn = jax.jit(forward, in_shardings=(_param_shardings(built), sharding.batch_sharding(mesh)),
                 out_shardings=sharding.replicated(mesh))
    compiled = _compile_under_mesh(fn, mesh, built.params, window)
    return Program(compiled, lambda: compiled(built.params, window))


def _pre_expert(built: steps.Programs, window: jax.Array, mesh: Mesh) -> Program:
    def pre_expert(params, window_bt):
        model = for_compute(nnx.merge(built.graphdef, params))
        return model.trunk.expert_input(model.embed(window_bt[:, :-1]))[2]

    batch_sh = sharding.batch_sharding(mesh)
    fn = jax.jit(pre_expert, in_shardings=(_param_shardings(built), batch_sh), out_shardings=batch_sh)
    compiled = _compile_under_mesh(fn, mesh, built.params, window)
    return Program(compiled, lambda: compiled(built.params, window))


def expert_input_shape(cfg: RunConfig) -> tuple[int, int, int, int]:
    """The global expert-stage buffer [batch, expert, shortened seq, slice width]."""
    m = cfg.model
    return cfg.train.batch_size, m.n_experts, m.seq_len // m.shorten, m.expert_width


def _experts(built: steps.Programs, cfg: RunConfig) -> Program:
    """What one device computes between the two all-to-alls: its batch share of its own experts.

    After the first all-to-all a device holds batch/mesh.data rows of n_experts/mesh.expert experts;
    the program runs on a single device with no mesh, so nothing in it can communicate.
    """
    batch, n_experts, seq, width = expert_input_shape(cfg)
    local_experts = n_experts // cfg.mesh.expert
    device = jax.local_devices()[0]
    rng = np.random.default_rng(0)
    # Fresh weights of the experts' shapes: the timing does not depend on their values, and the real
    # ones may live on other processes' devices.
    model = nnx.merge(built.graphdef, built.params)
    dtype = jnp.dtype(cfg.model.compute_dtype)  # what for_compute gives the experts in the model
    weights = jax.tree.map(lambda a: jax.device_put(
        0.02 * rng.standard_normal((local_experts, *a.shape[1:]), dtype=np.float32), device).astype(dtype),
        model.trunk.expert_weights())
    x_besw = jax.device_put(rng.standard_normal((batch // cfg.mesh.data, local_experts, seq, width),
                                                dtype=np.float32), device).astype(dtype)
    expert_fn = lambda w, x: model.trunk.expert_fn(w, x)[0]  # noqa: E731  (its output, not its stats)
    compiled = jax.jit(per_expert(expert_fn)).lower(weights, x_besw).compile()
    return Program(compiled, lambda: compiled(weights, x_besw))


def _exchange(cfg: RunConfig, mesh: Mesh, scale: int = 1) -> Program:
    """The model's own expert-stage all-to-alls (smoe.models.expert_parallel.exchange) alone, on the
    expert-stage buffer with `scale` times its batch rows (scale 1: the model's own buffer)."""
    batch, *rest = expert_input_shape(cfg)
    shape = (scale * batch, *rest)
    x_besw = jax.device_put(np.random.default_rng(0).standard_normal(shape, dtype=np.float32),
                            sharding.batch_sharding(mesh)).astype(cfg.model.compute_dtype)
    compiled = _compile_under_mesh(jax.jit(exchange), mesh, x_besw)
    return Program(compiled, lambda: compiled(x_besw))
