"""The explicit matmul FLOP count against XLA's cost analysis of the forward program (one device).

Tolerance: XLA counts every flop, analytic_flops only matmuls, so XLA must be >= the count and at
most 10% above it. The excess is elementwise work (norms, GELU, softmax, cross-entropy, masking),
which scales like 1/d relative to the matmuls: about 3-5% at d=64, 6-8% at d=32, 2% at d=128.
"""

import jax
import numpy as np
import pytest
from flax import nnx

from smoe.config import ModelConfig
from smoe.accounting import analytic_flop_terms, analytic_flops, paper_cost_flops
from smoe.measure.analysis import xla_cost
from smoe.models.lm import lm_loss, make_model

TOLERANCE = 0.10
BATCH = 4


def xla_forward_flops(cfg: ModelConfig) -> float:
    graphdef, params = nnx.split(make_model(cfg, 0))  # all state: adaptive routers carry a bias
    window = np.zeros((BATCH, cfg.seq_len + 1), np.int32)
    forward = jax.jit(lambda p, w: lm_loss(nnx.merge(graphdef, p), w)[0])
    return xla_cost(forward.lower(nnx.to_pure_dict(params), window).compile())["xla_flops"]


@pytest.mark.parametrize("cfg", [
    ModelConfig(kind="dense", d_model=64, seq_len=32, n_layers=2),
    ModelConfig(kind="topk", d_model=64, seq_len=32, n_layers=2, n_experts=4, top_k=2),
    ModelConfig(kind="topk", d_model=64, seq_len=32, n_layers=2, n_experts=8, routing="top_p", k_target=1.5,
                k_cap=2, balance="bias", fallback_fraction=0.25),
    ModelConfig(kind="sectional", d_model=64, seq_len=32, n_layers=3, pre_layers=1, n_experts=4, shorten=2),
    ModelConfig(kind="sectional", d_model=64, seq_len=32, n_layers=2, n_experts=2, recombine="none"),
    ModelConfig(kind="sectional", d_model=64, seq_len=32, n_layers=3, pre_layers=1, n_experts=4, shorten=2,
                slice_experts=4, routing="controlled", k_target=1.5, k_cap=2, balance="bias", fallback_fraction=0.25),
], ids=["dense", "topk", "topk-adaptive", "sectional", "sectional-nomix", "sectional-routed"])
def test_analytic_flops_match_xla_forward(cfg):
    analytic, xla = analytic_flops(cfg, BATCH), xla_forward_flops(cfg)
    assert analytic <= xla <= (1 + TOLERANCE) * analytic, (xla / analytic, analytic_flop_terms(cfg, BATCH))


def test_sectional_with_one_expert_counts_like_dense():
    dense = ModelConfig(kind="dense", d_model=64, seq_len=32, n_layers=2)
    sectional = ModelConfig(kind="sectional", d_model=64, seq_len=32, n_layers=2, n_experts=1, recombine="none")
    assert analytic_flops(sectional, BATCH) == analytic_flops(dense, BATCH)


@pytest.mark.parametrize("experts,shorten", [(1, 1), (4, 2), (8, 4)])
def test_paper_cost_terms_equal_the_matching_analytic_terms(experts, shorten):
    """theory's QKV, attention-score and FFN terms are exactly the model's own counts of those matmuls."""
    cfg = ModelConfig(kind="sectional", d_model=64, n_layers=3, pre_layers=1, seq_len=32, n_experts=experts,
                      shorten=shorten, expert_heads=1, ffn_mult=4)
    paper, ours = paper_cost_flops(cfg, batch=2), analytic_flop_terms(cfg, batch=2)
    for stage in ("pre", "experts"):
        assert paper[f"theory.qkv_{stage}"] == pytest.approx(ours[f"{stage}_qkv"])
        assert paper[f"theory.attention_{stage}"] == pytest.approx(ours[f"{stage}_attention_scores"])
        assert paper[f"theory.ffn_{stage}"] == pytest.approx(ours[f"{stage}_ffn_in"] + ours[f"{stage}_ffn_out"])
