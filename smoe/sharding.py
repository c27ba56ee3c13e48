"""The ("data", "expert") device mesh and where parameters, batches and metrics live on it."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from smoe.config import MeshConfig
from smoe.errors import UserError
from smoe.models.partitioning import MESH_AXES, SPECS


def make_mesh(cfg: MeshConfig) -> Mesh:
    devices = jax.devices()
    if cfg.size > len(devices):
        raise UserError(f"mesh: data*expert={cfg.size} needs {cfg.size} devices but jax sees {len(devices)} "
                        f"({devices[0].platform}); shrink mesh.data/mesh.expert or add devices")
    # Auto axes: XLA propagates shardings through the dense parts; the expert stage is manual (shard_map).
    return jax.make_mesh((cfg.data, cfg.expert), MESH_AXES, axis_types=(AxisType.Auto, AxisType.Auto),
                         devices=devices[:cfg.size])


def param_shardings(param_state: nnx.State, mesh: Mesh) -> dict:
    specs = nnx.to_pure_dict(nnx.get_partition_spec(param_state))
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs, is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, SPECS.pspec("batch"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def global_batch(batch_host: np.ndarray, mesh: Mesh) -> jax.Array:
    """Every process holds the same host batch (sampling is deterministic); each contributes its shards."""
    sharding = batch_sharding(mesh)
    return jax.make_array_from_callback(batch_host.shape, sharding, lambda index: batch_host[index])


def to_host(tree):
    """Replicated arrays read from the first local shard, which also works across processes."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)
