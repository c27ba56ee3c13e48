"""What the compiled sparse-attention programs contain: the gather train step never forms the main
attention's [t, t] scores (the indexer recall that needs them runs only in evaluation), and the
top-k selection adds no collective on the emulated 8-device mesh."""

import re

import jax
import numpy as np
import pytest
from flax import nnx

from smoe import sharding, steps
from smoe.config import MeshConfig
from smoe.models.lm import lm_loss, make_model
from tests.models.helpers import tiny, tokens
from tests.models.test_sharding import _collective_counts
from tests.train.helpers import run_config, tiny_run

BATCH, T, HEADS, INDEXER_HEADS = 2, 48, 4, 3  # distinct sizes, so the attention's [b, h, t, t] stands out


def _programs(mode: str) -> steps.Programs:
    model = {"kind": "dense", "n_heads": HEADS, "seq_len": T, "attention": "indexer", "attention_mode": mode,
             "attention_topk": 8, "attention_block": 4, "indexer_heads": INDEXER_HEADS, "indexer_dim": 8}
    cfg = run_config(tiny_run(model=model, mesh={"data": 1, "expert": 1}, train={"stage": "sparse",
                                                                                   "batch_size": BATCH}))
    return steps.build(cfg, sharding.make_mesh(cfg.mesh))


def _window(programs: steps.Programs):
    return sharding.global_batch(np.zeros((BATCH, T + 1), np.int32), programs.mesh)


def _attention_sized(hlo: str) -> list[str]:
    """Arrays with two length-t axes and at least b*h*t^2 elements: the main attention's scores or
    probabilities (the indexer's own [b, t, t, H_I] scores are smaller, H_I < h)."""
    found = []
    for dims in re.findall(r"\b(?:f32|bf16|f16|pred)\[([\d,]+)\]", hlo):
        shape = [int(n) for n in dims.split(",")]
        if shape.count(T) >= 2 and np.prod(shape) >= BATCH * HEADS * T * T:
            found.append(dims)
    return found


def _train_hlo(programs: steps.Programs) -> str:
    return programs.train_step.lower(programs.params, programs.opt_state, _window(programs)).compile().as_text()


@pytest.mark.parametrize("mode,dense_scores", [("gather", False), ("block", False), ("mask", True)])
def test_only_the_mask_train_step_forms_dense_attention_scores(mode, dense_scores):
    programs = _programs(mode)
    assert bool(_attention_sized(_train_hlo(programs))) == dense_scores


def test_recall_is_measured_in_evaluation_only():
    programs = _programs("gather")
    eval_hlo = programs.eval_step.lower(programs.params, _window(programs)).compile().as_text()
    assert _attention_sized(eval_hlo)  # the oracle top-k of the dense attention
    metrics = sharding.to_host(programs.eval_step(programs.params, _window(programs)))
    assert set(metrics) == {"ce", "layer0/indexer_kl", "layer0/indexer_recall", "layer1/indexer_kl",
                            "layer1/indexer_recall"}
    assert 0.0 <= float(metrics["layer0/indexer_recall"]) <= 1.0
    _, _, train_metrics = programs.train_step(programs.params, programs.opt_state, _window(programs))
    assert "layer0/indexer_kl" in train_metrics and "layer0/indexer_recall" not in train_metrics


@pytest.mark.parametrize("mode,attention_in", [("gather", "pre"), ("block", "all"), ("mask", "all")])
def test_sharded_selection_needs_no_all_gather(mode, attention_in):
    """The indexer's top-k runs on each device's own sequences (`batch_local`; XLA alone all-gathers
    the scores before its TopK), so on the 8-device mesh the sectional model keeps the expert
    stage's collective pattern: 2 all-to-alls forward, 4 with the backward, and no all-gather. With
    indexers in the experts, their per-sequence stats ([b, E] scalars) ride one more all-to-all back."""
    cfg = tiny(n_layers=2, n_experts=8, expert_heads=1, capacity_factor=1.0, attention="indexer",
               attention_in=attention_in, attention_mode=mode, attention_topk=4, attention_block=4)
    graphdef, state = nnx.split(make_model(cfg, seed=7), nnx.Param)
    loss_and_grad = jax.value_and_grad(lambda p, w: lm_loss(nnx.merge(graphdef, p), w)[0])
    mesh = sharding.make_mesh(MeshConfig(2, 4))
    params = jax.device_put(nnx.to_pure_dict(state), sharding.param_shardings(state, mesh))
    window = jax.device_put(tokens(cfg, batch=8), sharding.batch_sharding(mesh))
    with jax.set_mesh(mesh):
        forward = _collective_counts(lambda p, w: loss_and_grad(p, w)[0], params, window)
        backward = _collective_counts(loss_and_grad, params, window)
    stats = attention_in != "pre"
    assert forward["all-to-all"] == 2 + stats and backward["all-to-all"] == 2 * (2 + stats), (forward, backward)
    for counts in (forward, backward):
        assert counts["all-gather"] == counts["reduce-scatter"] == counts["collective-permute"] == 0, counts
