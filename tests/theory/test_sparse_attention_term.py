"""The sparse-attention term of S(E): k keys per query instead of L', plus the indexer's L'^2 H_I d_I,
and how E_opt moves with k / L' (smoe's own FLOP counts are checked against it in
tests/models/test_sparse_attention_cost.py)."""

import json

import numpy as np
import pytest

from theory import CostModel, InputError, e_opt_closed_form, e_opt_numeric
from tests.theory.test_theory_cli import run

BASE = dict(d0=1024, seq_len=512, seq_reduced=256, alpha=10.0)
INDEXER = dict(indexer_heads=4, indexer_dim=16)


@pytest.mark.parametrize("regime", ["parallel", "work"])
def test_terms_count_k_keys_per_query_and_the_indexer_pairs(regime):
    e = np.array([1.0, 4.0, 16.0])
    dense = CostModel(**BASE, regime=regime).terms(e)
    sparse = CostModel(**BASE, regime=regime, attention_topk=32, **INDEXER).terms(e)
    np.testing.assert_allclose(sparse["attention_experts"], dense["attention_experts"] * 32 / 256)
    np.testing.assert_allclose(sparse["attention_pre"], dense["attention_pre"] * 32 / 512)
    per_expert_indexer = 256**2 * 4 * 16  # every expert runs its own indexer at a fixed H_I d_I
    np.testing.assert_allclose(sparse["indexer_experts"], per_expert_indexer * (e if regime == "work" else 1.0))
    np.testing.assert_allclose(sparse["indexer_pre"], 512**2 * 4 * 16)
    unchanged = set(dense) - {"attention_pre", "attention_experts"}
    assert all(np.array_equal(sparse[name], dense[name]) for name in unchanged)


@pytest.mark.parametrize("regime", ["parallel", "work"])
def test_k_covering_the_sequence_is_dense_attention_plus_the_indexer(regime):
    dense = CostModel(**BASE, regime=regime)
    covered = CostModel(**BASE, regime=regime, attention_topk=512, **INDEXER)  # k >= L >= L'
    terms = covered.terms(8.0)
    assert {name: terms[name] for name in dense.terms(8.0)} == dense.terms(8.0)
    assert covered.total(8.0) == pytest.approx(dense.total(8.0) + terms["indexer_pre"] + terms["indexer_experts"])
    if regime == "parallel":  # one expert's indexer does not depend on E, so neither does the minimiser
        assert e_opt_numeric(covered) == pytest.approx(e_opt_numeric(dense), rel=1e-9)
    else:  # summed over experts the indexers grow with E and pull E_opt down
        assert e_opt_numeric(covered) < e_opt_numeric(dense)


def test_attention_dominated_e_opt_scales_as_the_cube_root_of_k_over_l():
    dense = CostModel(**BASE)
    for k in (128, 64, 32):
        sparse = CostModel(**BASE, attention_topk=k, **INDEXER)
        ratio = e_opt_closed_form(sparse, "attention") / e_opt_closed_form(dense, "attention")
        assert ratio == pytest.approx((k / 256) ** (1 / 3), rel=1e-12)


def test_numeric_e_opt_falls_with_k_over_l():
    model = dict(d0=4096, seq_len=8192, seq_reduced=8192, alpha=1e3)  # long sequences: attention matters
    e_opts = [e_opt_numeric(CostModel(**model, attention_topk=k, **INDEXER)) for k in (8192, 2048, 512, 128)]
    assert all(a > b for a, b in zip(e_opts, e_opts[1:])), e_opts


def test_attention_in_picks_the_stage():
    pre = CostModel(**BASE, attention_topk=32, attention_in="pre", **INDEXER).terms(4.0)
    experts = CostModel(**BASE, attention_topk=32, attention_in="experts", **INDEXER).terms(4.0)
    assert "indexer_pre" in pre and "indexer_experts" not in pre
    assert "indexer_experts" in experts and "indexer_pre" not in experts
    assert experts["attention_pre"] == CostModel(**BASE).terms(4.0)["attention_pre"]


@pytest.mark.parametrize("changes,field", [
    ({"indexer_heads": 4}, "attention_topk"),
    ({"attention_topk": 32, "indexer_dim": 16}, "indexer_heads"),
    ({"attention_topk": 0, **INDEXER}, "attention_topk"),
    ({"attention_topk": 32, "indexer_heads": 4, "indexer_dim": 1.5}, "indexer_dim"),
    ({"attention_in": "middle"}, "attention_in"),
])
def test_bad_sparse_attention_inputs_name_the_field(changes, field):
    with pytest.raises(InputError, match=field):
        CostModel(**BASE, **changes)


def test_eopt_cli_takes_the_sparse_attention_term(capsys):
    base = ["eopt", "--d", "4096", "--seq", "8192", "--alpha", "1e3", "--json"]
    sparse = ["--attention-topk", "512", "--indexer-heads", "4", "--indexer-dim", "16"]
    dense_e_opt = json.loads(run(base, capsys)[1])["e_opt"]
    code, out = run(base + sparse, capsys)
    expected = e_opt_numeric(CostModel(d0=4096, seq_len=8192, alpha=1e3, attention_topk=512, **INDEXER))
    assert code == 0 and json.loads(out)["e_opt"] == pytest.approx(expected) and expected < dense_e_opt
    code, out = run(base[:-1] + sparse, capsys)
    assert "k=512 (k/L'=0.0625)" in out


def test_stage_names_are_the_model_configs():
    """theory cannot import smoe (it stands alone), so the one vocabulary of attention_in is kept by this check."""
    from smoe.config import ATTENTION_PLACES
    from theory.cost_model import ATTENTION_PLACES as THEORY_PLACES

    assert THEORY_PLACES == ATTENTION_PLACES
