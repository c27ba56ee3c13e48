"""Every fast path against its slow float64 loop reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from smoe.models import reference, routing
from smoe.models.layers import block_forward, rms_norm
from smoe.models.lm import make_model
from smoe.models.trunks import top_k_ffn
from tests.models.helpers import activations, lm_logits, tiny, trunk_forward

TOL = dict(rtol=2e-4, atol=2e-5)
TINY_SEQ = tiny().seq_len


def test_dense_block_matches_loop_reference():
    cfg = tiny(kind="dense")
    model = make_model(cfg, seed=1)
    x = activations(cfg)
    weights = model.trunk.blocks[0].weights()
    fast = np.asarray(jax.jit(block_forward, static_argnums=2)(weights, jnp.asarray(x), cfg.n_heads))
    slow = np.stack([reference.block(weights, row, cfg.n_heads) for row in x])
    np.testing.assert_allclose(fast, slow, **TOL)


@pytest.mark.parametrize("n_experts,shorten,recombine", [(4, 2, "mix"), (2, 1, "none"), (8, 4, "mix"), (1, 4, "none")])
def test_sectional_trunk_matches_loop_reference(n_experts, shorten, recombine):
    cfg = tiny(n_experts=n_experts, shorten=shorten, recombine=recombine, expert_heads=1)
    model = make_model(cfg, seed=2)
    if recombine == "mix":  # zero at init, where a wrong mixing would go unseen
        model.trunk.w_mix_dd[...] = 0.3 * jax.random.normal(jax.random.key(2), model.trunk.w_mix_dd.shape)
    x = activations(cfg)
    fast, _ = trunk_forward(model, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(fast), reference.sectional_trunk(model.trunk, x, cfg), **TOL)


@pytest.mark.parametrize("capacity_factor,top_k", [(1.0, 2), (0.5, 1), (4.0, 2)])
def test_top_k_ffn_matches_token_loop(capacity_factor, top_k):
    cfg = tiny(kind="topk", capacity_factor=capacity_factor, top_k=top_k)
    model = make_model(cfg, seed=3)
    block = model.trunk.blocks[0]
    h = rms_norm(jnp.asarray(activations(cfg)), block.norm_ffn_d[...])
    fast, route = nnx.jit(top_k_ffn, static_argnums=2)(block, h, cfg)
    slow, dropped = reference.top_k_ffn(block, np.asarray(h), cfg)
    np.testing.assert_allclose(np.asarray(fast), slow, **TOL)
    assert float(routing.routing_metrics(route)["fraction_dropped"]) == pytest.approx(dropped)
    if capacity_factor < 1:
        assert dropped > 0, "a capacity factor of 0.5 must drop tokens, or the test checks nothing"


def test_sectional_with_one_expert_and_no_shortening_is_the_dense_model():
    sectional_cfg = tiny(n_experts=1, shorten=1, recombine="none", expert_heads=2, n_layers=3, pre_layers=1)
    dense_cfg = tiny(kind="dense", n_layers=3)
    sectional, dense = make_model(sectional_cfg, seed=4), make_model(dense_cfg, seed=5)
    _, sectional_state = nnx.split(sectional, nnx.Param)
    pure = nnx.to_pure_dict(sectional_state)
    experts = pure["trunk"]["experts"]
    blocks = [pure["trunk"]["pre_blocks"][0]] + [{k: v[0, layer] for k, v in experts.items()} for layer in range(2)]
    dense_pure = {k: v for k, v in pure.items() if k != "trunk"} | {"trunk": {"blocks": dict(enumerate(blocks))}}
    graphdef, _ = nnx.split(dense, nnx.Param)
    dense = nnx.merge(graphdef, dense_pure)
    tokens = jax.random.randint(jax.random.key(0), (2, sectional_cfg.seq_len), 0, 256)
    np.testing.assert_allclose(np.asarray(lm_logits(sectional, tokens)), np.asarray(lm_logits(dense, tokens)),
                               rtol=1e-5, atol=1e-5)


def test_sectional_with_one_expert_starts_from_the_dense_weights_for_the_same_seed():
    sectional_cfg = tiny(n_experts=1, shorten=1, recombine="none", expert_heads=2, n_layers=3, pre_layers=1)
    sectional, dense = make_model(sectional_cfg, seed=4), make_model(tiny(kind="dense", n_layers=3), seed=4)
    experts = sectional.trunk.experts.weights()
    for layer, block in enumerate(dense.trunk.blocks):
        w = (sectional.trunk.pre_blocks[0].weights() if layer == 0
             else jax.tree.map(lambda a, i=layer - 1: a[0, i], experts))
        for name, value in block.weights()._asdict().items():
            np.testing.assert_array_equal(np.asarray(getattr(w, name)), np.asarray(value), err_msg=name)
    np.testing.assert_array_equal(np.asarray(sectional.head_dv[...]), np.asarray(dense.head_dv[...]))


def test_mixing_starts_as_no_mixing():
    tokens = jax.random.randint(jax.random.key(0), (2, TINY_SEQ), 0, 256)
    mixed, plain = (make_model(tiny(recombine=mode), seed=8) for mode in ("mix", "none"))
    np.testing.assert_array_equal(np.asarray(lm_logits(mixed, tokens)), np.asarray(lm_logits(plain, tokens)))


@pytest.mark.parametrize("kind,shorten", [("dense", 1), ("topk", 1), ("sectional", 4)])
def test_models_are_causal(kind, shorten):
    cfg = tiny(kind=kind, shorten=shorten, capacity_factor=8.0)  # no drops: capacity must not couple positions
    model = make_model(cfg, seed=6)
    tokens = np.asarray(jax.random.randint(jax.random.key(1), (1, cfg.seq_len), 0, 256))
    changed = tokens.copy()
    t = 9
    changed[0, t] = (changed[0, t] + 1) % 256
    before, after = np.asarray(lm_logits(model, tokens)), np.asarray(lm_logits(model, changed))
    np.testing.assert_array_equal(before[:, :t], after[:, :t])
    assert not np.allclose(before[:, t:], after[:, t:]), "changing a token must change some later output"


def _routing_from_choices(expert_gsk, probs_gse):
    n_experts = probs_gse.shape[-1]
    assigned = jax.nn.one_hot(expert_gsk, n_experts)
    ones = jnp.ones(expert_gsk.shape, bool)
    return routing.Routing(None, None, probs_gse, jnp.log(probs_gse), assigned, ones)


def test_load_balance_loss_is_one_when_balanced_and_larger_when_skewed():
    n_experts, tokens = 4, 8
    balanced_choices = jnp.array([[[s % 4, (s + 1) % 4] for s in range(tokens)]])
    uniform = jnp.full((1, tokens, n_experts), 1.0 / n_experts)
    assert float(routing.load_balance_loss(_routing_from_choices(balanced_choices, uniform))) == pytest.approx(1.0)
    skewed_choices = jnp.array([[[0, 1]] * tokens])
    skewed_probs = jnp.tile(jnp.array([0.7, 0.2, 0.05, 0.05]), (1, tokens, 1))
    skewed = float(routing.load_balance_loss(_routing_from_choices(skewed_choices, skewed_probs)))
    assert skewed == pytest.approx(4 * (0.5 * 0.7 + 0.5 * 0.2))
    assert skewed > 1.0 + 0.5
