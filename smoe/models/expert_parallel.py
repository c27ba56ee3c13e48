"""Run one function per expert on expert-major buffers, expert-parallel over the mesh.

Both MoE families reduce to the same pattern: a batch-sharded buffer x[b, e, ...] (token-routed:
[group, expert, capacity, d]; sectional: [batch, expert, seq, d/E]) and weights stacked on a leading
expert axis. Outside the expert stage the batch is sharded over ("data", "expert"); inside, one
all-to-all over "expert" trades the batch shard for the expert shard, each device runs its own
experts with no further communication, and a second all-to-all trades back. So the designed
pattern per expert stage is exactly 2 all-to-alls forward, and no all-gather or reduce of
activations (the backward adds 2 more all-to-alls and the all-reduce of expert-weight gradients
over "data").
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from jax import lax
from jax.sharding import PartitionSpec as P

from smoe.models.partitioning import EXPERT_AXIS, SPECS


def exchange_in(x_local: jax.Array) -> jax.Array:
    """Inside shard_map: trade this device's batch shard of every expert for all rows of its own experts."""
    return lax.all_to_all(x_local, EXPERT_AXIS, split_axis=1, concat_axis=0, tiled=True)


def exchange_out(y_local: jax.Array) -> jax.Array:
    """Inside shard_map: the inverse of `exchange_in`."""
    return lax.all_to_all(y_local, EXPERT_AXIS, split_axis=0, concat_axis=1, tiled=True)


def per_expert(expert_fn: Callable[[Any, jax.Array], jax.Array]) -> Callable[[Any, jax.Array], jax.Array]:
    """expert_fn over stacked weights [e, ...] and an expert-major buffer [b, e, ...]."""
    return jax.vmap(expert_fn, in_axes=(0, 1), out_axes=1)


def expert_parallel(expert_fn: Callable[[Any, jax.Array], jax.Array], weights_e: Any, x_be: jax.Array) -> jax.Array:
    """y[:, e] = expert_fn(weights_e[e], x_be[:, e]) for every expert e.

    Without a mesh in context (`jax.set_mesh`) this is a plain vmap; with one, a shard_map over
    the ("data", "expert") mesh with the all-to-all exchange described in the module docstring.
    """
    if jax.sharding.get_abstract_mesh().empty:
        return per_expert(expert_fn)(weights_e, x_be)

    def local(w_local, x_local):
        return exchange_out(per_expert(expert_fn)(w_local, exchange_in(x_local)))

    weight_specs = jax.tree.map(lambda _: P(EXPERT_AXIS), weights_e)
    # A batch-axis prefix spec, so expert_fn may also return per-expert statistics of any rank.
    batch = SPECS.pspec("batch")
    return jax.shard_map(local, in_specs=(weight_specs, batch), out_specs=batch)(weights_e, x_be)


def exchange(x_be: jax.Array) -> jax.Array:
    """The expert stage's two all-to-alls with no compute between them (needs a mesh in context)."""
    batch = SPECS.pspec("batch")
    return jax.shard_map(lambda x: exchange_out(exchange_in(x)), in_specs=batch, out_specs=batch)(x_be)


def batch_local(fn: Callable[[Any, jax.Array], Any], weights: Any, x_b: jax.Array) -> Any:
    """fn(weights, x_b) shard by shard along the batch, for per-sequence work XLA would otherwise
    gather: its SPMD partitioner does not split `top_k` over a batch axis and all-gathers instead.
    Inside a shard_map (the expert stage) the batch is already local and fn runs as is."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.manual_axes:
        return fn(weights, x_b)
    batch = SPECS.pspec("batch")
    return jax.shard_map(fn, in_specs=(P(), batch), out_specs=batch)(weights, x_b)
