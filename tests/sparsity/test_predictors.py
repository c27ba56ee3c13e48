"""Predictors recover a planted importance pattern; the FLOP model counts what the MLPs multiply."""

import numpy as np

from smoe.config import ModelConfig
from smoe.sparsity import predictors
from smoe.accounting import predictor_flops


def test_predictor_reproduces_a_planted_importance_pattern():
    """Inputs come from 4 clusters; each cluster ranks 24 units in its own fixed order."""
    rng = np.random.default_rng(0)
    d, units, n = 16, 24, 320
    centres, orders = rng.standard_normal((4, d)) * 3, rng.random((4, units))
    cluster = rng.integers(0, 4, n)
    x = centres[cluster] + 0.3 * rng.standard_normal((n, d))
    y = orders[cluster] * 5.0 + 2.0 + 0.01 * rng.standard_normal((n, units))
    train, held = predictors.split(n)
    params = predictors.fit_mlp(x[train], y[train], hidden=32, epochs=60)
    pred = np.asarray(predictors.mlp(params, x[held]))
    assert predictors.spearman(pred, y[held]) > 0.9
    untrained = np.asarray(predictors.mlp(predictors.init_mlp(1, d, 32, units), x[held]))
    assert predictors.spearman(untrained, y[held]) < 0.5, "an untrained MLP must not already rank well"


def test_spearman_is_one_for_a_monotone_map_and_minus_one_reversed():
    y = np.random.default_rng(2).random((5, 10))
    assert predictors.spearman(np.exp(y), y) == 1.0
    np.testing.assert_allclose(predictors.spearman(-y, y), -1.0)


def test_predictor_flops_follow_the_shadowllm_perf_model():
    cfg = ModelConfig(kind="dense", d_model=64, n_layers=3, n_heads=4, ffn_mult=2)
    heads_neurons = 4 + 128
    assert predictor_flops(cfg, "shadow", 64) == 2 * (64 * 64 + 64 * 3 * heads_neurons)
    assert predictor_flops(cfg, "dejavu", 64) == 2 * 3 * (64 * 64 + 64 * heads_neurons)
    assert predictor_flops(cfg, "shadow", 64) < predictor_flops(cfg, "dejavu", 64)
