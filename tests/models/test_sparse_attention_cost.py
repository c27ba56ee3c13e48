"""Analytic FLOPs of sparse attention against the dense count it replaces, and jax-free import."""

import subprocess
import sys

import pytest

from smoe.accounting import analytic_flop_terms, paper_cost_flops
from smoe.sparse_attention_cost import attended_keys, sparse_attention_terms
from tests.models.helpers import tiny

ATTENTION = ("attention_scores", "attention_values")


@pytest.mark.parametrize("kind,prefixes", [("dense", [""]), ("sectional", ["pre_", "experts_"])])
def test_k_covering_the_sequence_costs_what_dense_attention_costs(kind, prefixes):
    cfg = tiny(kind=kind, attention="indexer", attention_mode="gather", attention_topk=10**6)
    dense, sparse = analytic_flop_terms(tiny(kind=kind), batch=3), sparse_attention_terms(cfg, batch=3)
    for prefix in prefixes:
        for name in ATTENTION:
            assert sparse[prefix + name] == dense[prefix + name]


@pytest.mark.parametrize("mode,ratio", [("gather", 1 / 4), ("block", 1 / 4), ("mask", 1.0)])
def test_main_attention_flops_scale_with_k_over_seq(mode, ratio):
    cfg = tiny(kind="dense", seq_len=64, attention="indexer", attention_mode=mode, attention_topk=16,
               attention_block=8)
    dense, sparse = analytic_flop_terms(tiny(kind="dense", seq_len=64), batch=2), sparse_attention_terms(cfg, batch=2)
    for name in ATTENTION:
        assert sparse[name] == pytest.approx(ratio * dense[name])
    # the indexer scores every pair with H_I d_I MACs where the main attention spends d_model
    assert sparse["indexer_scores"] / dense["attention_scores"] == pytest.approx(
        cfg.indexer_heads * cfg.indexer_dim / cfg.d_model)


def test_attended_keys():
    assert attended_keys("gather", seq=512, topk=64, block=16) == 64
    assert attended_keys("gather", seq=32, topk=64, block=16) == 32
    assert attended_keys("block", seq=512, topk=70, block=16) == 64
    assert attended_keys("mask", seq=512, topk=64, block=16) == 512


def test_the_model_count_takes_the_sparse_terms_over_the_dense_ones():
    cfg = tiny(kind="dense", seq_len=64, attention="indexer", attention_mode="gather", attention_topk=16)
    dense, counted = analytic_flop_terms(tiny(kind="dense", seq_len=64), 2), analytic_flop_terms(cfg, 2)
    sparse = sparse_attention_terms(cfg, 2)
    assert counted == dense | sparse
    assert counted["attention_scores"] == pytest.approx(dense["attention_scores"] / 4)


def test_only_the_configured_places_change():
    cfg = tiny(attention="indexer", attention_in="experts")
    terms = sparse_attention_terms(cfg, 1)
    assert terms and all(name.startswith("experts_") for name in terms)
    assert sparse_attention_terms(tiny(), 1) == {}


def test_importing_the_cost_module_does_not_import_jax():
    code = "import sys, smoe.sparse_attention_cost; print('jax' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("topk", [8, 24, 64])  # below L' = 16, between L' and L = 32, above both
def test_theory_sparse_term_is_the_models_gather_count(topk):
    """theory's k keys per query and indexer pairs (smoe eopt --attention-topk) are exactly the gather
    mode's own counts, in the pre-expert block and in the experts."""
    cfg = tiny(n_layers=3, pre_layers=1, seq_len=32, shorten=2, expert_heads=1, attention="indexer",
               attention_mode="gather", attention_topk=topk)
    paper, ours = paper_cost_flops(cfg, batch=2), analytic_flop_terms(cfg, batch=2)
    for stage in ("pre", "experts"):
        assert paper[f"theory.attention_{stage}"] == pytest.approx(ours[f"{stage}_attention_scores"])
        assert paper[f"theory.indexer_{stage}"] == pytest.approx(ours[f"{stage}_indexer_scores"])
