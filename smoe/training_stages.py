"""DeepSeek-V3.2's sparse-attention recipe as training stages (`train.stage`), and `--init-from`.

* dense: ordinary training (model.attention: dense).
* indexer_warmup: the main attention stays dense and every weight but the indexers is frozen; the
  loss's only trainable term is the indexer's KL to the head-summed attention (Eq. 3).
* sparse: top-k attention; the LM loss trains the model, the KL on the selected keys (Eq. 4) trains
  the indexer. Nothing here separates the two gradients: the indexer reads its input through
  stop_gradient and its selection reaches the attention only as indices (smoe.models.sparse_attention).
Started from scratch, `sparse` is the natively sparse arm; `--init-from RUN_DIR` starts any stage
from another run's latest weights (indexers absent there keep their fresh init).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp

from smoe.config import ModelConfig, RunConfig
from smoe.errors import UserError

INDEXER_MARK = "indexer"


def stage_model_config(cfg: RunConfig) -> ModelConfig:
    if cfg.train.stage == "indexer_warmup":
        return dataclasses.replace(cfg.model, attention_mode="dense")
    return cfg.model


def _path_names(path) -> tuple[str, ...]:
    return tuple(str(getattr(key, "key", getattr(key, "idx", key))) for key in path)


def is_indexer(names: tuple[str, ...]) -> bool:
    return any(INDEXER_MARK in name for name in names)


def stage_optimizer(cfg: RunConfig, tx: optax.GradientTransformation, params: dict) -> optax.GradientTransformation:
    """In the warm-up, frozen weights get no update at all (not even weight decay)."""
    if cfg.train.stage != "indexer_warmup":
        return tx
    labels = jax.tree_util.tree_map_with_path(
        lambda path, _: "train" if is_indexer(_path_names(path)) else "frozen", params)
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def _flat(tree) -> dict[tuple[str, ...], object]:
    return {_path_names(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def load_init(run_dir: str | Path, params: dict) -> dict:
    """`params` with every weight the run in `run_dir` also has replaced by its latest checkpoint's value."""
    directory = Path(run_dir) / "checkpoints"
    manager = ocp.CheckpointManager(directory.absolute()) if directory.is_dir() else None
    step = manager.latest_step() if manager else None
    if step is None:
        raise UserError(f"--init-from: {run_dir} has no checkpoint; pass the run directory of a finished run")
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
        source = _flat(manager.restore(step, args=ocp.args.StandardRestore())["params"])
    manager.close()
    target = _flat(params)
    for names, leaf in source.items():
        if names not in target and not is_indexer(names):
            raise UserError(f"--init-from: {run_dir} has weight {'/'.join(names)} this model lacks; "
                            "the model configs may differ only in the sparse attention keys")
    flat_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    merged = []
    for path, leaf in flat_leaves:
        names = _path_names(path)
        if names not in source:
            if not is_indexer(names):
                raise UserError(f"--init-from: {run_dir} lacks weight {'/'.join(names)}; "
                                "the model configs may differ only in the sparse attention keys")
            merged.append(leaf)
            continue
        value = np.asarray(source[names])
        if value.shape != leaf.shape:
            raise UserError(f"--init-from: weight {'/'.join(names)} is {value.shape} in {run_dir} but {leaf.shape} "
                            "here; the model configs may differ only in the sparse attention keys")
        merged.append(jax.device_put(value.astype(leaf.dtype), leaf.sharding))
    return jax.tree_util.tree_unflatten(treedef, merged)
