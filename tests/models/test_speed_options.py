"""Issue 12's speed options against the plain model: fused attention and rematerialisation give the
same numbers, bfloat16 compute tracks the float32 run within a stated tolerance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from smoe import sharding, steps
from smoe.config import config_from_dict
from smoe.errors import UserError
from smoe.models.layers import causal_attention, ffn
from smoe.models.partitioning import MESH_AXES
from smoe.models.lm import lm_loss, make_model
from tests.models.helpers import lm_logits, tiny, tokens

KINDS = ("dense", "topk", "sectional")
# fused and reference attention are the same math with a different reduction order
TOL = dict(rtol=1e-5, atol=1e-6)
# |loss_bf16 - loss_fp32| after each of BF16_STEPS train steps on the tiny model; measured ~0.002 nats
BF16_STEPS, BF16_LOSS_TOL = 6, 0.02


def test_fused_attention_equals_the_reference_on_cpu():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 16, 32), dtype=np.float32))
    w_qkv, w_o = (jnp.asarray(0.2 * rng.standard_normal(shape, dtype=np.float32)) for shape in ((32, 96), (32, 32)))
    attend = jax.jit(causal_attention, static_argnums=(3, 4))
    reference = np.asarray(attend(x, w_qkv, w_o, 4, "reference"))
    np.testing.assert_allclose(np.asarray(attend(x, w_qkv, w_o, 4, "xla")), reference, **TOL)
    # causal: the first position sees only itself, so changing later tokens leaves it alone
    changed = np.asarray(attend(x.at[:, 1:].set(0.0), w_qkv, w_o, 4, "xla"))
    np.testing.assert_allclose(changed[:, 0], reference[:, 0], **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_model_with_fused_attention_equals_the_reference(kind):
    cfg = tiny(kind=kind)
    window = jnp.asarray(tokens(cfg, batch=2))[:, :-1]
    reference = lm_logits(make_model(cfg, seed=1), window)
    fused = lm_logits(make_model(tiny(kind=kind, attention_impl="xla"), seed=1), window)
    np.testing.assert_allclose(np.asarray(fused), np.asarray(reference), **TOL)


def _plain_ffn(x, w_in, w_out):
    return jax.nn.gelu(x @ w_in) @ w_out


@pytest.mark.parametrize("sharded", (False, True))
def test_written_out_ffn_backward_equals_autodiff(sharded):
    """`ffn`'s own backward against autodiff of the same formula; sharded: inside a shard_map over
    the emulated mesh with replicated weights, so the weight gradients must be summed over devices."""
    rng = np.random.default_rng(0)
    x, w_in, w_out, probe = (jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
                             for shape in ((8, 6, 16), (16, 24), (24, 16), (8, 6, 16)))

    def grads(fn):
        if sharded:
            mesh = jax.make_mesh((2, 4), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 2)
            fn = jax.shard_map(fn, mesh=mesh, in_specs=(P(MESH_AXES), P(), P()), out_specs=P(MESH_AXES))
        loss = lambda x, w_in, w_out: jnp.sum(jnp.sin(fn(x, w_in, w_out)) * probe)  # noqa: E731
        return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, w_in, w_out)

    for ours, autodiff in zip(grads(ffn), grads(_plain_ffn), strict=True):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(autodiff), rtol=1e-5, atol=1e-6)


def _loss_and_grads(cfg, window):
    graphdef, state = nnx.split(make_model(cfg, seed=2))
    loss = lambda s: lm_loss(nnx.merge(graphdef, s), window)[0]  # noqa: E731
    return jax.make_jaxpr(loss)(state), jax.jit(jax.value_and_grad(loss))(state)


@pytest.mark.parametrize("kind", ("topk", "sectional"))  # sectional's pre-expert block is the dense model's block
def test_remat_gives_the_same_loss_and_gradients(kind):
    window = jnp.asarray(tokens(tiny(), batch=2))
    plain_jaxpr, (plain_loss, plain_grads) = _loss_and_grads(tiny(kind=kind), window)
    remat_jaxpr, (remat_loss, remat_grads) = _loss_and_grads(tiny(kind=kind, remat="block"), window)
    assert "remat" in str(remat_jaxpr) and "remat" not in str(plain_jaxpr)  # jax.checkpoint's primitive
    np.testing.assert_allclose(float(remat_loss), float(plain_loss), **TOL)
    for plain, remat in zip(jax.tree.leaves(plain_grads), jax.tree.leaves(remat_grads), strict=True):
        np.testing.assert_allclose(np.asarray(remat), np.asarray(plain), rtol=1e-4, atol=1e-7)


def _train_losses(compute_dtype: str):
    cfg = config_from_dict({
        "model": {"kind": "sectional", "d_model": 32, "n_layers": 2, "n_heads": 2, "ffn_mult": 2, "seq_len": 32,
                  "n_experts": 4, "pre_layers": 1, "compute_dtype": compute_dtype},
        "data": {"corpus": "unused"},
        "train": {"steps": 10, "batch_size": 8, "learning_rate": 0.01, "warmup_steps": 1}})
    built = steps.build(cfg, sharding.make_mesh(cfg.mesh))
    starts = np.random.default_rng(0).integers(0, 100, (BF16_STEPS, 8, 1))
    losses = []
    for start in starts:  # a learnable pattern, so the loss falls and the runs can drift apart
        window = sharding.global_batch(((start + np.arange(33)) * 7 % 23).astype(np.int32), built.mesh)
        if not losses:
            hlo = built.train_step.lower(built.params, built.opt_state, window).as_text()
        built.params, built.opt_state, metrics = built.train_step(built.params, built.opt_state, window)
        losses.append(float(metrics["loss"]))
    dtypes = {leaf.dtype for leaf in jax.tree.leaves((built.params, built.opt_state)) if leaf.dtype.kind == "f"}
    return np.array(losses), dtypes, hlo


def test_bfloat16_training_tracks_float32():
    fp32, fp32_dtypes, fp32_hlo = _train_losses("float32")
    bf16, bf16_dtypes, bf16_hlo = _train_losses("bfloat16")
    assert fp32[-1] < fp32[0] - 0.5, "the loss must fall, or the comparison checks nothing"
    np.testing.assert_array_less(np.abs(bf16 - fp32), BF16_LOSS_TOL)
    assert not np.array_equal(bf16, fp32), "bf16 compute must change the numbers a little"
    assert fp32_dtypes == bf16_dtypes == {np.dtype(np.float32)}, "params and optimizer state stay float32"
    bf16_dots = lambda hlo: [ln for ln in hlo.splitlines() if "dot_general" in ln and "xbf16>" in ln]  # noqa: E731
    assert bf16_dots(bf16_hlo) and not bf16_dots(fp32_hlo)


@pytest.mark.parametrize("changes,key", [
    ({"compute_dtype": "float16"}, "model.compute_dtype"),
    ({"attention_impl": "flash"}, "model.attention_impl"),
    ({"remat": "layer"}, "model.remat"),
    ({"attention_impl": "cudnn"}, "model.attention_impl"),  # cudnn needs bfloat16
    ({"attention_impl": "xla", "attention": "indexer", "kind": "dense"}, "model.attention_impl"),
])
def test_speed_options_are_validated(changes, key):
    with pytest.raises(UserError, match=f"^{key}: "):
        tiny(**changes)
