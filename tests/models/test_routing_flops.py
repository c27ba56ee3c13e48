"""Slot vs useful FLOPs of the routed expert stage against direct counts."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from smoe import accounting
from smoe.accounting import analytic_flop_terms
from smoe.models import adaptive_routing, routing
from smoe.models.layers import rms_norm
from smoe.models.lm import make_model
from smoe.models.trunks import top_k_ffn
from tests.models.helpers import activations, tiny


ADAPTIVE = {"routing": "top_p", "k_target": 1.5, "k_cap": 2, "fallback_fraction": 0.25}


@pytest.mark.parametrize("kind,adaptive", [("topk", {}), ("topk", {"n_experts": 8, **ADAPTIVE}),
                                           ("sectional", {"slice_experts": 4, **ADAPTIVE})])
def test_slot_flops_match_the_model_flop_count(kind, adaptive):
    cfg = tiny(kind=kind, capacity_factor=1.25, **adaptive)
    terms = analytic_flop_terms(cfg, batch=3)
    prefix = "experts_" if kind == "sectional" else ""
    expected = sum(terms.get(prefix + name, 0.0) for name in ("ffn_in", "ffn_out", "fallback_ffn"))
    assert accounting.slot_flops(cfg, 3) == pytest.approx(expected)
    assert (prefix + "fallback_ffn" in terms) == bool(adaptive)


def test_slot_equals_useful_when_every_slot_is_filled():
    cfg = tiny(kind="topk", capacity_factor=1.0, top_k=2)  # 16 tokens x 2 choices = 4 experts x 8 slots
    metrics = {f"layer{i}/{name}": value for i in range(cfg.n_layers)
               for name, value in (("mean_k", 2.0), ("fraction_dropped", 0.0), ("fallback_fraction", 0.0))}
    assert accounting.useful_flops(cfg, 2, metrics) == accounting.slot_flops(cfg, 2)


def test_useful_flops_count_kept_choices_and_fallback_rows():
    cfg = tiny(kind="topk", n_layers=1, n_experts=8, routing="top_p", top_p=0.6, k_cap=2, k_target=1.5,
               fallback_fraction=0.25, capacity_factor=0.5)
    model = make_model(cfg, seed=4)
    block = model.trunk.blocks[0]
    h = rms_norm(jnp.asarray(activations(cfg)), block.norm_ffn_d[...])
    _, route = nnx.jit(top_k_ffn, static_argnums=2)(block, h, cfg, jnp.float32(cfg.top_p))
    metrics = {f"layer0/{k}": float(v) for k, v in (routing.routing_metrics(route)
                                                    | adaptive_routing.adaptive_metrics(route)).items()
               if np.ndim(v) == 0}
    kept, fallback = float(np.sum(route.dispatch_gsec)), float(np.sum(route.fallback_gs))
    assert metrics["layer0/fraction_dropped"] > 0 and fallback > 0, "both corrections must be exercised"
    per_token = 4.0 * cfg.d_model * cfg.d_ff
    expected = kept * per_token + fallback * cfg.max_choices * per_token
    assert accounting.useful_flops(cfg, 2, metrics) == pytest.approx(expected, rel=1e-5)
    assert accounting.useful_flops(cfg, 2, metrics) < accounting.slot_flops(cfg, 2)
