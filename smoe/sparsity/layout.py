"""Where the heads and neurons sit, how many each layer keeps, and what a predictor costs. jax-free.

Layer l has g_l groups (1 for a full-width block, E for a sectional expert layer), each with h_l
heads and f_l FFN neurons. Scores and targets are flat vectors laid out layer by layer, group-major. FLOP counts of pruned
execution and of the predictors live in smoe.accounting.
"""

from __future__ import annotations

from dataclasses import dataclass

from smoe.config import ModelConfig
from smoe.errors import UserError

CRITERIA = ("plainact", "l2norm", "fisher")
PREDICTORS = ("shadow", "dejavu")
MODES = ("mask", "gather")


@dataclass(frozen=True)
class Layer:
    groups: int
    heads: int  # per group
    neurons: int  # per group
    width: int  # of the residual stream the group reads


@dataclass(frozen=True)
class Layout:
    layers: tuple[Layer, ...]
    d_model: int

    @property
    def total_heads(self) -> int:
        return sum(layer.groups * layer.heads for layer in self.layers)

    @property
    def total_neurons(self) -> int:
        return sum(layer.groups * layer.neurons for layer in self.layers)


def layout_for(cfg: ModelConfig) -> Layout:
    if cfg.kind == "topk":
        raise UserError("model.kind: sparsity supports the dense and sectional models, got 'topk'")
    if cfg.slice_experts > 1:
        raise UserError("model.slice_experts: sparsity supports sectional slices with one FFN; set slice_experts: 1")
    if cfg.kind == "dense":
        return Layout((Layer(1, cfg.n_heads, cfg.d_ff, cfg.d_model),) * cfg.n_layers, cfg.d_model)
    full = Layer(1, cfg.n_heads, cfg.d_ff, cfg.d_model)
    expert = Layer(cfg.n_experts, cfg.expert_heads, cfg.ffn_mult * cfg.expert_width, cfg.expert_width)
    return Layout((full,) * cfg.pre_layers + (expert,) * cfg.expert_layers, cfg.d_model)


def check_sparsity(sparsity: float) -> float:
    if not 0.0 <= sparsity < 1.0:
        raise UserError(f"--sparsity: must be in [0, 1), got {sparsity}")
    return sparsity


def kept(count: int, sparsity: float) -> int:
    """Per-layer budget: round (1 - s) * count, but always keep one so a layer never vanishes."""
    return max(1, round((1.0 - check_sparsity(sparsity)) * count))


def keep_counts(layout: Layout, sparsity: float) -> tuple[tuple[int, int], ...]:
    """(heads, neurons) each group of each layer keeps."""
    return tuple((kept(layer.heads, sparsity), kept(layer.neurons, sparsity)) for layer in layout.layers)
