"""The budget -> config heuristic: FLOPs hit the budget, parameter counts match real models, bad points are refused."""

import re

import pytest

from smoe.errors import UserError
from smoe.models.lm import count_params, make_model
from smoe.accounting import analytic_flops, params_active, params_total, train_flops_per_token
from smoe.quality.heuristic import (MIN_STEPS, batch_size, config_for_budget, learning_rate, model_config,
                                    point_from_dict, train_flops)

ADAPTIVE = {"family": "topk", "n_experts": 4, "routing": "controlled", "k_target": 1.5, "k_cap": 2,
            "balance": "bias", "fallback_fraction": 0.1}
SLICES = {"family": "sectional", "n_experts": 4, "slice_experts": 4, "routing": "controlled", "k_target": 1.5}
ARCHES = [{"family": "dense"}, {"family": "topk", "n_experts": 4, "top_k": 2},
          {"family": "sectional", "n_experts": 4}, {"family": "sectional", "n_experts": 8, "shorten": 2}, ADAPTIVE,
          SLICES]


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("d_model", [32, 64, 256])
@pytest.mark.parametrize("budget", [3.0e11, 1.0e12, 7.7e13])
def test_train_flops_match_the_budget_within_one_percent(arch, d_model, budget):
    point = point_from_dict({"arch": arch, "d_model": d_model, "budget": budget})
    smallest = MIN_STEPS * train_flops_per_token(model_config(point)) * batch_size(d_model) * point.seq_len
    if budget < smallest * (1 - 0.5 / MIN_STEPS):
        # too small for this width: refused with the budget it needs, never silently off
        with pytest.raises(UserError, match=re.escape(f"raise it to at least {smallest:.3g}")):
            config_for_budget(point)
        return
    cfg = config_for_budget(point)
    # Independent of the heuristic's own helper: the analytic forward count, x3, over every token trained.
    tokens = cfg.train.steps * cfg.train.batch_size * cfg.model.seq_len
    spent = 3 * analytic_flops(cfg.model, 1) / cfg.model.seq_len * tokens
    assert spent == pytest.approx(train_flops(cfg))
    assert abs(spent / budget - 1) <= 0.01
    assert cfg.train.steps >= MIN_STEPS


def test_smallest_accepted_budget_still_within_one_percent():
    point = point_from_dict({"family": "dense", "d_model": 32, "budget": 1.0})
    per_step = train_flops_per_token(model_config(point)) * batch_size(32) * point.seq_len
    for steps in (MIN_STEPS, MIN_STEPS + 0.49):
        cfg = config_for_budget(point_from_dict({"family": "dense", "d_model": 32, "budget": steps * per_step}))
        assert abs(train_flops(cfg) / (steps * per_step) - 1) <= 0.01


@pytest.mark.parametrize("arch", ARCHES)
def test_parameter_counts_match_built_models(arch):
    cfg = model_config(point_from_dict({"arch": arch, "d_model": 32, "budget": 1e12}))
    assert params_total(cfg) == count_params(make_model(cfg, seed=0))
    if arch == ADAPTIVE:
        # sized for k_target = 1.5 of 4 expert FFNs; the k_cap = 2 wide fallback FFN is off the token's path
        ffn = 2 * cfg.d_model * cfg.d_ff
        assert params_total(cfg) - params_active(cfg) == cfg.n_layers * (2.5 * ffn + 2 * ffn)
    elif arch == SLICES:
        # per slice and expert layer, sized for k_target = 1.5 of 4 candidate FFNs of width d/E
        width = cfg.expert_width
        assert params_total(cfg) - params_active(cfg) == cfg.n_experts * cfg.expert_layers * 2.5 * (
            2 * width * cfg.ffn_mult * width)
    elif arch["family"] == "topk":
        # a token passes through 2 of 4 expert FFNs per layer
        assert params_total(cfg) - params_active(cfg) == cfg.n_layers * 2 * 2 * cfg.d_model * cfg.d_ff
    else:
        assert params_active(cfg) == params_total(cfg)


def test_settings_depend_on_width_and_budget_only():
    a = config_for_budget(point_from_dict({"family": "dense", "d_model": 64, "budget": 1e12, "seed": 3}))
    b = config_for_budget(point_from_dict({"arch": ARCHES[3], "d_model": 64, "budget": 1e12}))
    assert (a.train.batch_size, a.train.learning_rate) == (b.train.batch_size, b.train.learning_rate)
    assert a.train.warmup_steps == a.train.steps // 10 and a.train.seed == 3
    assert learning_rate(32) > learning_rate(64) > learning_rate(256) >= 1e-3
    assert batch_size(32) == batch_size(64) < batch_size(256)


def test_run_config_keys_and_aliases_name_the_same_fields():
    plain = point_from_dict({"family": "sectional", "n_experts": 4, "shorten": 2, "d_model": 32, "budget": 1e12})
    dotted = point_from_dict({"model.kind": "sectional", "model.n_experts": 4, "r": 2, "d": 32, "budget": 1e12})
    assert dotted == plain


def test_arch_and_repeat_are_folded_into_the_point():
    point = point_from_dict({"arch": {"family": "sectional", "n_experts": 2, "shorten": 2}, "d_model": 32,
                             "budget": "1e12", "seed": 10, "repeat": 2})
    assert (point.family, point.n_experts, point.shorten, point.seed, point.budget) == ("sectional", 2, 2, 12, 1e12)
    assert point.label == "sectional E2 r2"


def test_adaptive_routing_keys_reach_the_model_and_the_label():
    point = point_from_dict({"arch": ADAPTIVE, "d_model": 32, "budget": 1e12, "model.dynamic_loss_coef": 1e-4})
    model = config_for_budget(point).model
    assert (model.routing, model.k_target, model.k_cap, model.balance, model.fallback_fraction,
            model.dynamic_loss_coef) == ("controlled", 1.5, 2, "bias", 0.1, 1e-4)
    assert point.label == "topk E4 ktarget1.5 balance bias kcap2 fallback0.1 dyn0.0001"
    top_p = point_from_dict({"family": "topk", "n_experts": 8, "routing": "top_p", "top_p": 0.3, "d_model": 32,
                             "budget": 1e12})
    assert top_p.label == "topk E8 p0.3"
    # the default point is today's top-k, under today's label
    assert point_from_dict({"arch": ARCHES[1], "d_model": 32, "budget": 1e12}).label == "topk E4 k2"
    slices = point_from_dict({"arch": SLICES, "d_model": 32, "budget": 1e12})
    assert (config_for_budget(slices).model.slice_experts, slices.label) == (4, "sectional E4 r1 M4 ktarget1.5")
    # a lower k_target buys more steps from the same budget: capacity, and so slot FLOPs, shrink
    lower = point_from_dict({"arch": ADAPTIVE | {"k_target": 1.0}, "d_model": 32, "budget": 1e12})
    assert config_for_budget(lower).train.steps > config_for_budget(point).train.steps


@pytest.mark.parametrize("raw, field", [
    ({"family": "dense", "d_model": 32, "budget": 1e6}, "budget"),
    ({"family": "dense", "d_model": 32, "budget": "lots"}, "budget"),
    ({"family": "dense", "d_model": 32, "budget": 1e12, "n_experts": 4}, "n_experts"),
    ({"family": "topk", "d_model": 32, "budget": 1e12, "n_experts": 4, "top_k": 2, "shorten": 2}, "shorten"),
    ({"family": "moe", "d_model": 32, "budget": 1e12}, "family"),
    ({"family": "dense", "d_model": 40, "budget": 1e12}, "d_model"),
    ({"family": "dense", "budget": 1e12}, "d_model"),
    ({"family": "dense", "d_model": 32, "budget": 1e12, "lr": 0.1}, "lr"),
    ({"family": "dense", "d_model": 32, "budget": 1e12, "train.steps": 10}, "train.steps"),
    ({"family": "sectional", "d_model": 32, "budget": 1e12, "n_experts": 3}, "n_experts"),
    ({"family": "dense", "d_model": 32, "budget": 1e12, "seq_len": 0}, "seq_len"),
    ({"family": "dense", "d_model": 32, "budget": 1e12, "routing": "top_p"}, "routing"),
    ({"family": "sectional", "d_model": 32, "budget": 1e12, "n_experts": 4, "top_k": 2}, "top_k"),
    ({"family": "sectional", "d_model": 32, "budget": 1e12, "n_experts": 4, "slice_experts": 2, "top_k": 3}, "top_k"),
    ({"family": "topk", "d_model": 32, "budget": 1e12, "n_experts": 4, "routing": "controlled", "k_target": 5.0},
     "k_target"),
    ({"family": "topk", "d_model": 32, "budget": 1e12, "n_experts": 4, "balance": "aux"}, "balance"),
    ({"family": "hourglass", "d_model": 32, "budget": 1e12}, "shorten"),
    ({"family": "hourglass", "d_model": 32, "budget": 1e12, "shorten": 2, "n_experts": 2}, "n_experts"),
    ({"family": "dense", "d_model": 32, "budget": 1e12, "lr_scale": 0}, "lr_scale"),
    ({"family": "dense", "d_model": 32, "budget": 1e12, "lr_scale": 2.0, "lr_from": "runs/lr"}, "lr_scale"),
    ({"family": "dense", "d_model": 32, "budget": 1e12, "lr_from": 3}, "lr_from"),
])
def test_bad_points_are_refused_with_one_line_naming_the_field(raw, field):
    with pytest.raises(UserError) as err:
        config_for_budget(point_from_dict(raw))
    message = str(err.value)
    assert message.startswith(f"{field}:") and "\n" not in message
