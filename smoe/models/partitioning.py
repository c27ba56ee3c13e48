"""Mesh axis names and where each kind of tensor lives on the mesh, named once for every model.

Gemma-style: a spec per tensor role, named by its shape letters (b batch, t/s sequence, d width,
e expert, f FFN width, w expert slice width). Batch-major activations are sharded over every device
("data" x "expert"); weights stacked on a leading expert axis are sharded over "expert"; all else is
replicated. Specs are tuples of axis names so they serve both as nnx parameter metadata
(`out_sharding`) and, through `P(*spec)`, as shard_map / NamedSharding specs.
"""

from __future__ import annotations

from dataclasses import dataclass

from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
EXPERT_AXIS = "expert"
MESH_AXES = (DATA_AXIS, EXPERT_AXIS)


@dataclass(frozen=True)
class Specs:
    batch: tuple = (MESH_AXES,)  # any batch-major array: tokens_bt, act_btd, expert-major x_besw, ...
    w_edf: tuple = (EXPERT_AXIS, None, None)
    w_efd: tuple = (EXPERT_AXIS, None, None)
    w_el: tuple = (EXPERT_AXIS, None)  # leading [expert, layer] axes of stacked expert blocks

    def pspec(self, name: str) -> P:
        return P(*getattr(self, name))


SPECS = Specs()
