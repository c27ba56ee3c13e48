"""Sharded == single device on the emulated 8-device mesh, and the expert stage's collective pattern."""

import collections
import re

import jax
import numpy as np
import pytest
from flax import nnx

from smoe import sharding
from smoe.config import MeshConfig
from smoe.models.lm import lm_loss, make_model
from tests.models.helpers import tiny, tokens

MESH_SHAPES = [(1, 8), (2, 4), (8, 1)]
COLLECTIVES = ("all-to-all", "all-gather", "all-reduce", "reduce-scatter", "collective-permute")


def _setup(kind: str):
    cfg = tiny(kind=kind, n_layers=2, n_experts=8, expert_heads=1, capacity_factor=1.0)
    graphdef, state = nnx.split(make_model(cfg, seed=7), nnx.Param)

    def loss(params, window_bt):
        return lm_loss(nnx.merge(graphdef, params), window_bt)[0]

    return cfg, state, jax.value_and_grad(loss)


def _on_mesh(shape, state, window):
    mesh = sharding.make_mesh(MeshConfig(*shape))
    params = jax.device_put(nnx.to_pure_dict(state), sharding.param_shardings(state, mesh))
    return mesh, params, jax.device_put(window, sharding.batch_sharding(mesh))


@pytest.mark.parametrize("kind", ["dense", "topk", "sectional"])
def test_sharded_loss_and_grads_equal_single_device(kind):
    cfg, state, loss_and_grad = _setup(kind)
    window = tokens(cfg, batch=8)
    loss_ref, grads_ref = jax.jit(loss_and_grad)(nnx.to_pure_dict(state), window)
    for shape in MESH_SHAPES:
        mesh, params, window_sharded = _on_mesh(shape, state, window)
        with jax.set_mesh(mesh):
            loss, grads = jax.jit(loss_and_grad)(params, window_sharded)
        np.testing.assert_allclose(float(loss), float(loss_ref), rtol=1e-6, err_msg=f"mesh {shape}")
        jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-7,
                                                             err_msg=f"mesh {shape}"), grads, grads_ref)


def _collective_counts(fn, *args) -> collections.Counter:
    text = jax.jit(fn).lower(*args).compile().as_text()
    found = re.findall(r"\b(" + "|".join(COLLECTIVES) + r")(?:-start)?\(", text)
    return collections.Counter({op: found.count(op) for op in COLLECTIVES})


@pytest.mark.parametrize("kind,expert_stages", [("sectional", 1), ("topk", 2)])
def test_expert_stage_collectives(kind, expert_stages):
    """Per expert stage: 2 all-to-alls forward (4 with the backward), never an all-gather.

    The only all-reduces left are the loss mean (forward) and the gradient reductions (backward).
    """
    cfg, state, loss_and_grad = _setup(kind)
    assert cfg.n_layers == 2 and (kind != "sectional" or cfg.pre_layers == 1)
    mesh, params, window = _on_mesh((2, 4), state, tokens(cfg, batch=8))
    with jax.set_mesh(mesh):
        forward = _collective_counts(lambda p, w: loss_and_grad(p, w)[0], params, window)
        backward = _collective_counts(loss_and_grad, params, window)
    assert forward["all-to-all"] == 2 * expert_stages
    assert backward["all-to-all"] == 4 * expert_stages
    for counts in (forward, backward):
        assert counts["all-gather"] == counts["reduce-scatter"] == counts["collective-permute"] == 0, counts
    assert forward["all-reduce"] >= 1 and backward["all-reduce"] >= 1


def test_dense_model_needs_no_all_to_all():
    cfg, state, loss_and_grad = _setup("dense")
    mesh, params, window = _on_mesh((2, 4), state, tokens(cfg, batch=8))
    with jax.set_mesh(mesh):
        counts = _collective_counts(loss_and_grad, params, window)
    assert counts["all-to-all"] == 0 and counts["all-gather"] == 0
