"""Importance criteria and the two ways of skipping, against independent computations."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from smoe.models import decode
from smoe.models.lm import make_model
from smoe.sparsity import importance as imp
from smoe.sparsity import plans
from smoe.sparsity.layout import keep_counts, layout_for
from tests.models.helpers import tiny, tokens

TOL = dict(rtol=2e-4, atol=2e-5)
CONFIGS = [dict(kind="dense"), dict(shorten=1, expert_heads=2)]


def _setup(changes, seed=3):
    cfg = tiny(**changes)
    net, spec = decode.net_from_model(make_model(cfg, seed=seed))
    return cfg, net, spec, jnp.asarray(tokens(cfg, batch=3, seed=seed))


def _zero_head_output(net, layer, group, head, n_heads):
    w = net.layers[layer]
    head_dim = w.w_o_dd.shape[-2] // n_heads
    w_o = w.w_o_dd.at[group, head * head_dim:(head + 1) * head_dim].set(0.0)
    return net._replace(layers=net.layers[:layer] + (w._replace(w_o_dd=w_o),) + net.layers[layer + 1:])


@pytest.mark.parametrize("changes", CONFIGS)
def test_a_head_with_zeroed_output_projection_has_zero_gradient_importance(changes):
    cfg, net, spec, window = _setup(changes)
    layer = len(net.layers) - 1
    net = _zero_head_output(net, layer, 0, 1, spec.n_heads[layer])
    for criterion in ("plainact", "fisher"):
        heads = np.asarray(jax.jit(imp.importance, static_argnums=(1, 3))(net, spec, window, criterion)[layer][0])
        assert np.all(heads[:, 0, 1] == 0.0), criterion
        assert np.all(heads[:, 0, 0] > 0.0), f"{criterion}: the other head must matter, or the test checks nothing"


@pytest.mark.parametrize("changes", CONFIGS)
def test_plainact_neurons_match_the_per_example_weight_gradient(changes):
    cfg, net, spec, window = _setup(changes)
    scores = jax.jit(imp.importance, static_argnums=(1, 3))(net, spec, window, "plainact")

    def example_loss(n, row):
        inputs, targets = row[None, :-1], row[None, 1:]
        logits = decode.full_logits(n, spec, inputs)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets))

    example_grad = jax.jit(jax.grad(example_loss))
    for example in range(window.shape[0]):
        grads = example_grad(net, window[example])
        for layer, w in enumerate(net.layers):
            expected = np.abs(np.asarray(w.w_in_df) * np.asarray(grads.layers[layer].w_in_df)).sum(axis=1)
            np.testing.assert_allclose(np.asarray(scores[layer][1][example]), expected, rtol=1e-3, atol=1e-9)


@pytest.mark.parametrize("changes", CONFIGS)
def test_masking_equals_zeroing_the_pruned_weights(changes):
    """A mask shared by the batch is the same as zeroing the pruned heads' W_o rows and neurons' W_out rows."""
    cfg, net, spec, window = _setup(changes)
    layout = layout_for(cfg)
    counts = keep_counts(layout, 0.5)
    rng = np.random.default_rng(0)
    scores = tuple((jnp.broadcast_to(jnp.asarray(rng.random((1, l.groups, l.heads))), (3, l.groups, l.heads)),
                    jnp.broadcast_to(jnp.asarray(rng.random((1, l.groups, l.neurons))), (3, l.groups, l.neurons)))
                   for l in layout.layers)
    inputs = window[:, :-1]
    masked = jax.jit(lambda n, x: decode.full_logits(n, spec, x, plans.fixed_plan(n, spec, scores, counts, "mask")))(
        net, inputs)
    zeroed = list(net.layers)
    for layer, w in enumerate(zeroed):
        plan_sel = plans.fixed_plan(net, spec, scores, counts, "mask")(layer, None)
        head_dim = w.w_o_dd.shape[-2] // spec.n_heads[layer]
        row_keep = jnp.repeat(plan_sel.head_scale_bgh[0], head_dim, axis=-1)
        zeroed[layer] = w._replace(w_o_dd=w.w_o_dd * row_keep[..., None],
                                   w_out_fd=w.w_out_fd * plan_sel.neuron_scale_bgf[0][..., None])
    expected = jax.jit(lambda n, x: decode.full_logits(n, spec, x))(net._replace(layers=tuple(zeroed)), inputs)
    np.testing.assert_allclose(np.asarray(masked), np.asarray(expected), **TOL)


@pytest.mark.parametrize("changes,sparsity", [(CONFIGS[0], 0.5), (CONFIGS[1], 0.7)])
def test_gathered_equals_masked_with_per_example_selections(changes, sparsity):
    cfg, net, spec, window = _setup(changes)
    layout = layout_for(cfg)
    counts = keep_counts(layout, sparsity)
    rng = np.random.default_rng(1)
    scores = tuple((jnp.asarray(rng.random((3, l.groups, l.heads))), jnp.asarray(rng.random((3, l.groups, l.neurons))))
                   for l in layout.layers)
    inputs = window[:, :-1]
    run = lambda mode: jax.jit(lambda n, x: decode.full_logits(  # noqa: E731
        n, spec, x, plans.fixed_plan(n, spec, scores, counts, mode), plans.kept_heads(spec, counts, mode)))(net, inputs)
    masked, gathered = np.asarray(run("mask")), np.asarray(run("gather"))
    np.testing.assert_allclose(gathered, masked, **TOL)
    dense = np.asarray(jax.jit(lambda n, x: decode.full_logits(n, spec, x))(net, inputs))
    assert np.abs(masked - dense).max() > 1e-3, "pruning must change the logits, or the test checks nothing"


@pytest.mark.parametrize("mode", ["mask", "gather"])
def test_sparsity_zero_is_the_dense_program_exactly(mode):
    cfg, net, spec, window = _setup(CONFIGS[1])
    layout = layout_for(cfg)
    counts = keep_counts(layout, 0.0)
    scores = tuple((jnp.zeros((3, l.groups, l.heads)), jnp.zeros((3, l.groups, l.neurons))) for l in layout.layers)
    inputs = window[:, :-1]
    plan = plans.fixed_plan(net, spec, scores, counts, mode)
    sparse = jax.jit(lambda n, x: decode.full_logits(n, spec, x, plan, plans.kept_heads(spec, counts, mode)))(net, inputs)
    dense = jax.jit(lambda n, x: decode.full_logits(n, spec, x))(net, inputs)
    np.testing.assert_array_equal(np.asarray(sparse), np.asarray(dense))


@pytest.mark.parametrize("mode", ["mask", "gather"])
def test_decoding_with_a_fixed_selection_equals_the_sparse_full_forward(mode):
    """The latency path: selections made once, then prefill and one-token steps on a cache of kept heads."""
    cfg, net, spec, window = _setup(CONFIGS[1])
    layout = layout_for(cfg)
    counts = keep_counts(layout, 0.5)
    rng = np.random.default_rng(4)
    scores = tuple((jnp.asarray(rng.random((3, l.groups, l.heads))), jnp.asarray(rng.random((3, l.groups, l.neurons))))
                   for l in layout.layers)
    plan, kept = plans.fixed_plan(net, spec, scores, counts, mode), plans.kept_heads(spec, counts, mode)
    inputs = window[:, :-1]
    expected = np.asarray(jax.jit(lambda n, x: decode.full_logits(n, spec, x, plan, kept))(net, inputs))
    chosen = jax.jit(lambda: [plan(layer, None)._replace(n_heads=None) for layer in range(len(net.layers))])()
    fixed = lambda sel: lambda layer, _x: sel[layer]._replace(n_heads=kept[layer])  # noqa: E731
    step = jax.jit(lambda n, sel, x, c, p: decode.forward(n, spec, x, c, p, fixed(sel))[:2])
    cache = decode.init_cache(net, spec, 3, cfg.seq_len, kept)
    logits, cache = step(net, chosen, inputs[:, :6], cache, 0)
    np.testing.assert_allclose(np.asarray(logits), expected[:, :6], **TOL)
    for pos in range(6, cfg.seq_len):
        logits, cache = step(net, chosen, inputs[:, pos:pos + 1], cache, pos)
        np.testing.assert_allclose(np.asarray(logits[:, 0]), expected[:, pos], **TOL)
