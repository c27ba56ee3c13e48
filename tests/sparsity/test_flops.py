"""The analytic FLOPs of gathered (pruned) execution against XLA's cost analysis of the gathered forward.

As in tests/measure/test_measure_flops.py, XLA counts every flop and the analytic count only the
matmuls, so XLA must lie in [count, (1 + tolerance) * count]; gathering shrinks the matmuls but not
the norms, so the elementwise excess is larger than for the dense forward (about 6-9 % here).
"""

import jax
import numpy as np
import pytest

from smoe.accounting import HEAD_TERMS, NEURON_TERMS, analytic_flop_terms, pruned_flop_terms, sparse_flops_per_token
from smoe.config import ModelConfig
from smoe.measure.analysis import xla_cost
from smoe.models import decode
from smoe.models.lm import make_model
from smoe.sparsity import plans
from smoe.sparsity.layout import keep_counts, layout_for

TOLERANCE = 0.15
BATCH = 2
CONFIGS = [ModelConfig(kind="dense", d_model=64, n_layers=2, n_heads=4, seq_len=32),
           ModelConfig(kind="sectional", d_model=64, n_layers=3, n_heads=4, seq_len=32, n_experts=2,
                       expert_heads=2, pre_layers=1, shorten=1)]


def xla_gathered_flops(cfg: ModelConfig, sparsity: float) -> float:
    net, spec = decode.net_from_model(make_model(cfg, 0))
    layout = layout_for(cfg)
    counts = keep_counts(layout, sparsity)
    rng = np.random.default_rng(0)
    scores = tuple((rng.random((BATCH, l.groups, l.heads)), rng.random((BATCH, l.groups, l.neurons)))
                   for l in layout.layers)
    kept = plans.kept_heads(spec, counts, "gather")
    forward = jax.jit(lambda n, s, w: decode.full_logits(n, spec, w, plans.fixed_plan(n, spec, s, counts, "gather"),
                                                         kept))
    tokens = np.zeros((BATCH, cfg.seq_len), np.int32)
    return xla_cost(forward.lower(net, scores, tokens).compile())["xla_flops"]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["dense", "sectional"])
def test_pruned_flops_match_xla_of_the_gathered_forward(cfg):
    analytic = sum(pruned_flop_terms(cfg, BATCH, 0.5).values())
    xla = xla_gathered_flops(cfg, 0.5)
    assert analytic <= xla <= (1 + TOLERANCE) * analytic, xla / analytic


def test_pruned_terms_scale_with_the_kept_units_and_sparsity_zero_is_dense():
    cfg = CONFIGS[1]
    dense = analytic_flop_terms(cfg, 1)
    assert pruned_flop_terms(cfg, 1, 0.0) == dense
    pruned = pruned_flop_terms(cfg, 1, 0.5)  # 4 -> 2 heads and 256 -> 128 neurons; experts 2 -> 1 head, 64 -> 32
    for name in HEAD_TERMS + NEURON_TERMS:
        for prefix in ("pre_", "experts_"):
            assert pruned[prefix + name] == dense[prefix + name] / 2
    assert pruned["lm_head"] == dense["lm_head"] and pruned["mix"] == dense["mix"]
    per_token = sparse_flops_per_token(cfg, 0.5, "gather", predictor_flops_per_input=320.0)
    assert per_token["predictor"] == 10.0 and per_token["pruned_matmuls"] == per_token["dense_pruned_matmuls"] / 2
    assert per_token["total"] == sum(pruned.values()) / cfg.seq_len + 10.0
    masked = sparse_flops_per_token(cfg, 0.5, "mask")
    assert masked["total"] == masked["dense"], "masking multiplies the dense matmuls"
