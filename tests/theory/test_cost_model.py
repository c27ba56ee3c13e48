"""The named terms of S(E) in both readings, and input validation."""

import numpy as np
import pytest

from theory import CostModel, InputError

BASE = dict(d0=1024, seq_len=512, seq_reduced=256, alpha=10.0)


def test_terms_match_the_paper_formulas_in_the_parallel_reading():
    m = CostModel(**BASE, regime="parallel")
    e = 4.0
    t = m.terms(e)
    assert t["qkv_pre"] == 3 * 512 * 1024**2
    assert t["attention_pre"] == 512**2 * 1024
    # one expert: 3 L' (d0/E)^2 and L'^2 (d0/E)
    assert t["qkv_experts"] == pytest.approx(3 * 256 * (1024 / e) ** 2)
    assert t["attention_experts"] == pytest.approx(256**2 * 1024 / e)
    assert t["overhead"] == pytest.approx(10.0 * e**2)
    assert set(t) == {"qkv_pre", "attention_pre", "qkv_experts", "attention_experts", "overhead"}


def test_work_reading_sums_the_parallel_expert_terms_over_experts():
    e = np.array([1.0, 2.0, 8.0, 32.0])
    work, par = CostModel(**BASE, regime="work").terms(e), CostModel(**BASE, regime="parallel").terms(e)
    for name in ("qkv_experts", "attention_experts"):
        np.testing.assert_allclose(work[name], e * par[name])
    np.testing.assert_allclose(work["qkv_pre"], par["qkv_pre"])


def test_optional_terms_appear_only_when_enabled():
    plain = CostModel(**BASE)
    full = CostModel(**BASE, ffn_mult=4.0, latency=3.0)
    nopre = CostModel(**BASE, include_pre=False)
    assert "ffn_experts" not in plain.terms(2) and "latency" not in plain.terms(2)
    assert full.terms(2)["ffn_experts"] == pytest.approx(2 * 4 * 256 * (1024 / 2) ** 2)
    assert full.terms(2)["ffn_pre"] == pytest.approx(2 * 4 * 512 * 1024**2)
    assert full.terms(2)["latency"] == pytest.approx(6.0)
    assert not any(name.endswith("_pre") for name in nopre.terms(2))


def test_total_equals_sum_of_terms_and_power_series_for_arrays():
    m = CostModel(**BASE, ffn_mult=2.0, latency=5.0, regime="work")
    e = np.arange(1, 65, dtype=float)
    total = m.total(e)
    assert total.shape == e.shape
    np.testing.assert_allclose(total, sum(m.terms(e).values()))
    np.testing.assert_allclose(total, sum(c * e**k for k, c in m.power_coefficients().items()))


def test_traditional_layer_is_the_pre_block_alone():
    m = CostModel(**BASE, ffn_mult=4.0)
    pre = sum(v for k, v in m.terms(1).items() if k.endswith("_pre"))
    assert m.traditional() == pytest.approx(pre)


@pytest.mark.parametrize(
    "override, field",
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"d0": 0}, "d0"),
        ({"d0": 12.5}, "d0"),
        ({"seq_len": -3}, "seq_len"),
        ({"seq_reduced": 1024}, "seq_reduced"),
        ({"heads": 0}, "heads"),
        ({"regime": "fast"}, "regime"),
        ({"ffn_mult": 0.0}, "ffn_mult"),
        ({"latency": -1.0}, "latency"),
    ],
)
def test_invalid_settings_raise_input_error_naming_the_field(override, field):
    with pytest.raises(InputError, match=field):
        CostModel(**{**BASE, **override})


def test_non_positive_expert_counts_are_rejected():
    with pytest.raises(InputError, match="E must be positive"):
        CostModel(**BASE).terms(np.array([1.0, 0.0]))
