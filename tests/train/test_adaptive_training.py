"""A few real training steps with every adaptive routing and balancing option."""

import jax
import numpy as np
import pytest

from smoe import sharding, steps
from smoe.config import config_from_dict
from smoe.data import load_corpus, train_batch
from smoe.errors import UserError
from tests.train.helpers import run_config, tiny_run

TOPK = {"kind": "topk", "n_experts": 4, "top_k": 2}


# Every routing, every balance and each option at least once, in as few compiled train steps as that
# takes (bias balancing with the adaptive routers is checked on the model in test_adaptive_routing).
@pytest.mark.parametrize("adaptive", [
    {"routing": "top_k", "balance": "bias"},
    {"routing": "top_p", "top_p": 0.6, "k_target": 1.5, "k_cap": 2, "fallback_fraction": 0.25, "balance": "switch",
     "dynamic_loss_coef": 1e-4, "renormalize_gates": True},
    {"routing": "controlled", "top_p": 0.3, "k_target": 2.5, "balance": "none"},
])
def test_adaptive_options_train(shakespeare, adaptive):
    cfg = run_config(tiny_run(model=TOPK | adaptive, train={"warmup_steps": 0}))
    mesh = sharding.make_mesh(cfg.mesh)
    programs = steps.build(cfg, mesh)
    before = sharding.to_host(programs.params)
    corpus = load_corpus("shakespeare")
    for step in range(3):
        window = sharding.global_batch(train_batch(corpus.train, step, 8, cfg.model.seq_len, seed=0), mesh)
        programs.params, programs.opt_state, metrics = programs.train_step(programs.params, programs.opt_state, window)
    metrics = sharding.to_host(metrics)
    assert np.isfinite(metrics["loss"])
    for layer in range(cfg.model.n_layers):
        k = metrics[f"layer{layer}/mean_k"]
        assert 1.0 <= k <= cfg.model.max_choices and k <= metrics[f"layer{layer}/p95_k"] + 1e-6
        histogram = np.asarray(metrics[f"layer{layer}/k_histogram"])
        assert histogram.sum() == pytest.approx(1.0) and histogram @ np.arange(histogram.size) == pytest.approx(k)
        assert metrics[f"layer{layer}/max_vio"] >= 0 and 0 <= metrics[f"layer{layer}/fallback_fraction"] < 1
    after = sharding.to_host(programs.params)
    blocks = after["trunk"]["blocks"]
    if cfg.model.balance == "bias":  # advanced by the step, and never by the optimizer: it holds no moments for it
        assert all(np.any(blocks[i]["router_bias_e"] != 0) for i in blocks)
        opt_paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(programs.opt_state)]
        assert opt_paths and not any("router_bias_e" in path for path in opt_paths)
    if cfg.model.routing == "controlled":  # k starts below 2.5 at p=0.3, so the controller raises p
        assert after["trunk"]["router_p"] > before["trunk"]["router_p"]
    if cfg.model.fallback_fraction > 0:
        assert any(metrics[f"layer{i}/fallback_fraction"] > 0 for i in range(cfg.model.n_layers))


@pytest.mark.parametrize("model,field", [
    ({"routing": "top_q"}, "model.routing"),
    ({"balance": "aux"}, "model.balance"),
    ({"routing": "top_p", "top_p": 0.0}, "model.top_p"),
    ({"routing": "controlled", "k_target": 5.0}, "model.k_target"),
    ({"k_cap": 9}, "model.k_cap"),
    ({"renormalize_gates": True}, "model.renormalize_gates"),
    ({"routing": "top_p", "fallback_fraction": 0.1}, "model.fallback_fraction"),  # no k_cap: nothing falls back
    ({"kind": "sectional", "routing": "top_p"}, "model.routing"),
])
def test_bad_adaptive_keys_name_the_field(model, field):
    with pytest.raises(UserError, match=f"^{field}: "):
        config_from_dict(tiny_run(model=TOPK | model))
