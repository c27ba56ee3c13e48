"""KV-cache decoding against the model's own full forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoe.errors import UserError
from smoe.models import decode
from smoe.models.lm import make_model
from tests.models.helpers import lm_logits, tiny, tokens

TOL = dict(rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("changes", [dict(kind="dense"), dict(shorten=1, recombine="mix"),
                                     dict(shorten=1, recombine="none", n_experts=2, pre_layers=2, n_layers=3)])
def test_prefill_then_steps_equal_the_full_forward(changes):
    cfg = tiny(**changes)
    model = make_model(cfg, seed=7)
    if cfg.kind == "sectional" and cfg.recombine == "mix":  # zero at init, where a wrong mixing would go unseen
        model.trunk.w_mix_dd[...] = 0.3 * jax.random.normal(jax.random.key(7), model.trunk.w_mix_dd.shape)
    window = jnp.asarray(tokens(cfg, batch=2)[:, :-1])
    expected = np.asarray(lm_logits(model, window))
    net, spec = decode.net_from_model(model)
    full = jax.jit(lambda n, x: decode.full_logits(n, spec, x))(net, window)
    np.testing.assert_allclose(np.asarray(full), expected, **TOL)

    prompt = 5
    step = jax.jit(lambda n, x, c, p: decode.forward(n, spec, x, c, p)[:2])
    cache = decode.init_cache(net, spec, 2, cfg.seq_len)
    logits, cache = step(net, window[:, :prompt], cache, 0)
    np.testing.assert_allclose(np.asarray(logits[:, -1]), expected[:, prompt - 1], **TOL)
    for pos in range(prompt, cfg.seq_len):
        logits, cache = step(net, window[:, pos:pos + 1], cache, pos)
        np.testing.assert_allclose(np.asarray(logits[:, 0]), expected[:, pos], **TOL)


def test_shortened_sectional_and_topk_are_refused():
    for cfg in (tiny(shorten=2), tiny(kind="topk")):
        with pytest.raises(UserError, match="model\\.(shorten|kind)"):
            decode.net_from_model(make_model(cfg, seed=0))
