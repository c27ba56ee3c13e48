"""The sweep's controls: sectional E=1 r=1 is the dense model for the same seed (same loss curve),
and hourglass is sectional E=1 with shortening and no mixing."""

import dataclasses

import numpy as np
import pytest

from smoe import sharding, steps
from smoe.accounting import params_total
from smoe.quality.heuristic import config_for_budget, point_from_dict

BUDGET = 2.0e11


def _config(arch: dict, d_model: int = 32):
    return config_for_budget(point_from_dict({"arch": arch, "d_model": d_model, "budget": BUDGET, "seed": 3}))


def _loss_curve(cfg, windows: np.ndarray) -> list[float]:
    programs = steps.build(cfg, sharding.make_mesh(cfg.mesh))
    params, opt_state, losses = programs.params, programs.opt_state, []
    for window in windows:
        params, opt_state, metrics = programs.train_step(params, opt_state, sharding.global_batch(window, programs.mesh))
        losses.append(float(metrics["loss"]))
    return losses


def test_sectional_one_expert_no_shortening_trains_as_dense():
    dense, sectional = _config({"family": "dense"}), _config({"family": "sectional", "n_experts": 1, "shorten": 1})
    assert sectional.train == dense.train  # same steps, batch, learning rate, seed
    assert (sectional.model.recombine, sectional.model.expert_heads) == ("none", dense.model.n_heads)
    assert params_total(sectional.model) == params_total(dense.model)
    # Full learning rate from the second step, so five steps move the weights well away from init.
    short = dataclasses.replace(dense.train, warmup_steps=1)
    dense, sectional = (dataclasses.replace(cfg, train=short) for cfg in (dense, sectional))
    # A repeated phrase at random offsets: learnable in a few steps, unlike uniform random bytes.
    text = np.frombuffer(b"to be, or not to be, that is the question. " * 8, np.uint8).astype(np.int32)
    starts = np.random.default_rng(0).integers(0, 64, (5, dense.train.batch_size))
    windows = np.stack([[text[s:s + dense.model.seq_len + 1] for s in row] for row in starts])
    dense_curve, sectional_curve = _loss_curve(dense, windows), _loss_curve(sectional, windows)
    assert dense_curve[-1] < dense_curve[0] - 0.05, "the steps must train, or equal curves prove nothing"
    # Not bit-equal: the trunk adds back x + (out - x) and vmaps the single expert, and Adam amplifies
    # those float32 roundings (measured: equal for two steps, 2.5e-5 relative by the fifth).
    np.testing.assert_allclose(sectional_curve, dense_curve, rtol=2e-4)


@pytest.mark.parametrize("shorten", [2, 4])
def test_hourglass_is_sectional_with_one_expert_and_no_mixing(shorten):
    hourglass = _config({"family": "hourglass", "shorten": shorten}).model
    one_expert = _config({"family": "sectional", "n_experts": 1, "shorten": shorten}).model
    assert hourglass == one_expert
    assert (hourglass.kind, hourglass.n_experts, hourglass.recombine) == ("sectional", 1, "none")


def test_experts_keep_the_dense_head_width_and_mix_only_across_slices():
    model = _config({"family": "sectional", "n_experts": 2, "shorten": 2}, d_model=64).model
    assert model.expert_width // model.expert_heads == model.d_model // model.n_heads == 16
    assert model.recombine == "mix"


def test_lr_scale_multiplies_the_widths_learning_rate():
    base = _config({"family": "topk", "n_experts": 4, "top_k": 2})
    scaled = _config({"family": "topk", "n_experts": 4, "top_k": 2, "lr_scale": 0.5})
    assert scaled.train.learning_rate == pytest.approx(0.5 * base.train.learning_rate)
    assert dataclasses.replace(scaled.train, learning_rate=base.train.learning_rate) == base.train
