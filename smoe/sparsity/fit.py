"""`smoe sparsity fit`: train a ShadowLLM- or DejaVu-style predictor on a collected dataset and save it.

Heads and neurons are min-max normalised separately (per sample, per layer for DejaVu) so neither
dominates the MSE; the MLP's input is min-max normalised inside `predictors.mlp`.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from smoe.errors import UserError
from smoe.sparsity import dataset, predictors
from smoe.accounting import predictor_flops
from smoe.sparsity.layout import PREDICTORS, Layout, layout_for
from smoe.sparsity.plans import unflatten
from smoe.sparsity.run import load_config

PARAMS_NAME, META_NAME = "params.npz", "predictor.json"


def _targets(layout: Layout, heads: np.ndarray, neurons: np.ndarray, layer: int | None) -> np.ndarray:
    if layer is None:
        return np.concatenate([np.asarray(predictors.minmax(jnp.asarray(heads))),
                               np.asarray(predictors.minmax(jnp.asarray(neurons)))], axis=1)
    h, f = unflatten(layout, heads, neurons)[layer]
    return np.concatenate([np.asarray(predictors.minmax(h.reshape(len(h), -1))),
                           np.asarray(predictors.minmax(f.reshape(len(f), -1)))], axis=1)


def fit(run_dir: Path, data_dir: Path, predictor: str, out: Path, hidden: int | None, epochs: int,
        force: bool = False) -> dict:
    if predictor not in PREDICTORS:
        raise UserError(f"--predictor: must be one of {PREDICTORS}, got {predictor!r}")
    if epochs < 1:
        raise UserError(f"--epochs: must be >= 1, got {epochs}")
    dataset.check_out(out, force, (PARAMS_NAME, META_NAME))
    cfg = load_config(run_dir)
    layout = layout_for(cfg.model)
    arrays, data_meta = dataset.load(data_dir)
    if arrays["heads"].shape[1] != layout.total_heads or arrays["shadow_x"].shape[1] != cfg.model.d_model:
        raise UserError(f"DATA_DIR: {data_dir} was collected from a different model than {run_dir}; collect again")
    hidden = hidden or cfg.model.d_model
    train, held = predictors.split(arrays["heads"].shape[0])
    params, pred_heads, pred_neurons = {}, [], []
    groups = [None] if predictor == "shadow" else list(range(len(layout.layers)))
    for layer in groups:
        x = arrays["shadow_x"] if layer is None else arrays["layer_x"][:, layer]
        y = _targets(layout, arrays["heads"], arrays["neurons"], layer)
        mlp = predictors.fit_mlp(x[train], y[train], hidden, epochs)
        params.update({f"{'shadow' if layer is None else f'layer{layer}'}/{k}": np.asarray(v) for k, v in mlp.items()})
        out_nm = np.asarray(predictors.mlp(mlp, jnp.asarray(x[held], jnp.float32)))
        n_heads = (layout.total_heads if layer is None
                   else layout.layers[layer].groups * layout.layers[layer].heads)
        pred_heads.append(out_nm[:, :n_heads])
        pred_neurons.append(out_nm[:, n_heads:])
    meta = {"predictor": predictor, "criterion": data_meta["criterion"], "hidden": hidden, "epochs": epochs,
            "train_windows": int(len(train)), "held_out_windows": int(len(held)),
            "spearman_heads": predictors.spearman(np.concatenate(pred_heads, 1), arrays["heads"][held]),
            "spearman_neurons": predictors.spearman(np.concatenate(pred_neurons, 1), arrays["neurons"][held]),
            "predictor_flops": predictor_flops(cfg.model, predictor, hidden), "run_dir": str(run_dir)}
    dataset.write_dir(out, PARAMS_NAME, params, META_NAME, meta)
    return meta


def load_predictor(pred_dir: Path) -> tuple[dict, dict]:
    """({"shadow": mlp} or {layer: mlp}, meta)."""
    pred_dir = Path(pred_dir)
    if not (pred_dir / PARAMS_NAME).is_file() or not (pred_dir / META_NAME).is_file():
        raise UserError(f"--predictor-dir: {pred_dir} holds no predictor; make one with `smoe sparsity fit`")
    mlps: dict = {}
    with np.load(pred_dir / PARAMS_NAME) as data:
        for key in data.files:
            name, leaf = key.split("/")
            mlps.setdefault(name if name == "shadow" else int(name.removeprefix("layer")), {})[leaf] = jnp.asarray(data[key])
    return mlps, json.loads((pred_dir / META_NAME).read_text())
