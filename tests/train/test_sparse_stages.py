"""The sparse-attention recipe: which loss reaches which weights, and the dense -> warm-up -> sparse
chain through `train --init-from` on the real corpus."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from smoe import sharding, steps
from smoe.checkpoint import Checkpoints
from smoe.config import ModelConfig
from smoe.errors import UserError
from smoe.models.lm import lm_loss, make_model
from smoe.train import train
from smoe.training_stages import _flat, is_indexer
from tests.models.helpers import tiny, tokens
from tests.train.helpers import run_config, tiny_run

SPARSE_MODEL = {"attention": "indexer", "attention_topk": 8, "attention_mode": "gather", "indexer_heads": 2,
                "indexer_dim": 8}


def _grads_of(cfg: ModelConfig, metric: str) -> dict:
    graphdef, state = nnx.split(make_model(cfg, seed=0), nnx.Param)
    window = jnp.asarray(tokens(cfg, batch=2))
    grads = jax.jit(jax.grad(lambda p: lm_loss(nnx.merge(graphdef, p), window)[1][metric]))(nnx.to_pure_dict(state))
    return _flat(grads)


@pytest.mark.parametrize("kind,mode", [("dense", "gather"), ("sectional", "mask"), ("sectional", "block")])
def test_lm_loss_never_reaches_the_indexer_and_the_kl_never_reaches_the_model(kind, mode):
    cfg = tiny(kind=kind, attention="indexer", attention_mode=mode, attention_topk=4, attention_block=4)
    ce_grads, kl_grads = _grads_of(cfg, "ce"), _grads_of(cfg, "aux_loss")
    indexer_names = [names for names in ce_grads if is_indexer(names)]
    assert indexer_names
    for names, grad in ce_grads.items():
        norm = float(jnp.linalg.norm(grad))
        assert (norm == 0) == is_indexer(names), (names, norm)
    for names, grad in kl_grads.items():
        norm = float(jnp.linalg.norm(grad))
        assert (norm > 0) == is_indexer(names), (names, norm)


def _train_rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _final_params(out, cfg) -> dict:
    programs = steps.build(cfg, sharding.make_mesh(cfg.mesh))
    checkpoints = Checkpoints(out / "checkpoints", keep=2)
    params = checkpoints.restore(cfg.train.steps, programs.state())["params"]
    checkpoints.close()
    return _flat(params)


def test_dense_then_warmup_then_sparse_through_init_from(shakespeare, tmp_path):
    dense_cfg = run_config(tiny_run())
    warm_cfg = run_config(tiny_run(model=SPARSE_MODEL, train={"stage": "indexer_warmup"}))
    sparse_cfg = run_config(tiny_run(model=SPARSE_MODEL, train={"stage": "sparse"}))
    train(dense_cfg, tmp_path / "dense", progress=False)
    train(warm_cfg, tmp_path / "warm", progress=False, init_from=tmp_path / "dense")
    train(sparse_cfg, tmp_path / "sparse", progress=False, init_from=tmp_path / "warm")

    dense, warm, sparse = (_final_params(tmp_path / run, cfg) for run, cfg in
                           (("dense", dense_cfg), ("warm", warm_cfg), ("sparse", sparse_cfg)))
    fresh = _flat(nnx.to_pure_dict(nnx.state(make_model(warm_cfg.model, warm_cfg.train.seed), nnx.Param)))
    for names, value in warm.items():
        if is_indexer(names):  # the warm-up trains the indexers, from their fresh init
            assert not np.allclose(np.asarray(value), np.asarray(fresh[names])), names
        else:  # and leaves every other weight exactly as the dense run left it
            np.testing.assert_array_equal(np.asarray(value), np.asarray(dense[names]), err_msg=str(names))
    changed = [names for names in sparse if not np.array_equal(np.asarray(sparse[names]), np.asarray(warm[names]))]
    assert any(is_indexer(n) for n in changed) and any(not is_indexer(n) for n in changed)

    for run in ("warm", "sparse"):
        rows = _train_rows(tmp_path / run)
        train_row = [row for row in rows if row["split"] == "train"][-1]
        eval_row = [row for row in rows if row["split"] == "eval"][-1]
        for layer in range(sparse_cfg.model.n_layers):
            assert 0.0 <= eval_row[f"layer{layer}/indexer_recall"] <= 1.0  # eval-only: it needs dense scores
            assert f"layer{layer}/indexer_recall" not in train_row
            assert train_row[f"layer{layer}/indexer_kl"] >= 0.0 and eval_row[f"layer{layer}/indexer_kl"] >= 0.0
    warm_kl = [row["layer0/indexer_kl"] for row in _train_rows(tmp_path / "warm") if row["split"] == "train"]
    assert warm_kl[-1] < warm_kl[0], warm_kl


def test_init_from_rejects_a_different_model(shakespeare, tmp_path):
    train(run_config(tiny_run()), tmp_path / "dense", progress=False)
    wider = run_config(tiny_run(model=SPARSE_MODEL | {"d_model": 64}, train={"stage": "sparse"}))
    with pytest.raises(UserError, match="--init-from: weight .* is"):
        train(wider, tmp_path / "wider", progress=False, init_from=tmp_path / "dense")
    with pytest.raises(UserError, match="--init-from: .* has no checkpoints"):
        train(wider, tmp_path / "nothing", progress=False, init_from=tmp_path / "missing")
    assert not (tmp_path / "nothing").exists()


@pytest.mark.parametrize("model,train_section,key", [
    ({"attention": "indexer"}, {}, "train.stage"),
    ({}, {"stage": "sparse"}, "train.stage"),
    (SPARSE_MODEL | {"attention_mode": "blocky"}, {"stage": "sparse"}, "model.attention_mode"),
    (SPARSE_MODEL | {"attention_mode": "block", "attention_block": 3}, {"stage": "sparse"}, "model.attention_topk"),
    (SPARSE_MODEL | {"attention_mode": "block", "attention_topk": 32, "attention_block": 32}, {"stage": "sparse"},
     "model.attention_block"),
    (SPARSE_MODEL | {"kind": "dense", "attention_in": "pre"}, {"stage": "sparse"}, "model.attention_in"),
    (SPARSE_MODEL | {"kind": "topk"}, {"stage": "sparse"}, "model.attention"),
    (SPARSE_MODEL | {"attention_select": "oracle"}, {"stage": "sparse"}, "model.attention_select"),
    (SPARSE_MODEL | {"attention_select": "window", "attention_sinks": 8}, {"stage": "sparse"}, "model.attention_sinks"),
])
def test_bad_sparse_attention_config_names_the_key(model, train_section, key):
    with pytest.raises(UserError, match=f"^{key}:"):
        run_config(tiny_run(model=model, train=train_section))
