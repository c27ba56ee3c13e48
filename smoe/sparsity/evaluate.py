"""`smoe sparsity eval`: validation bpb and latency of a run under predicted (or oracle) sparsity.

Per val window, selections are made at the last prompt position (the window's first half) and the
loss is scored on the continuation only, so no position is pruned using bytes it has not seen yet;
`dense_val_bpb` scores the same positions without pruning. Sparsity 0 keeps everything, so no plan
runs and the program is the dense one: val_bpb == dense_val_bpb exactly.
Latency: batch-1 decode (prefill the prompt with the predictor, then one-token steps on a KV cache
with the selection fixed, as ShadowLLM runs it) and batch-8 full-window prefill, both with the
selection's cost included; `predictor_ms` is the predictor alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from smoe.data import bits_per_byte, eval_batches
from smoe.errors import UserError
from smoe.models import decode
from smoe.sparsity import importance, plans, predictors
from smoe.sparsity.fit import load_predictor
from smoe.sparsity.layout import CRITERIA, MODES, check_sparsity, keep_counts, layout_for
from smoe.sparsity.run import load_net, load_text, prompt_position


class Selector:
    """Builds a layer plan for a batch of windows from the oracle criterion or a fitted predictor."""

    def __init__(self, spec, layout, counts, mode, at, mlps, source, criterion):
        self.spec, self.layout, self.counts, self.mode, self.at = spec, layout, counts, mode, at
        self.mlps, self.source, self.criterion = mlps, source, criterion
        self.kept_heads = plans.kept_heads(spec, counts, mode)

    def _split(self, out_bn, n_heads):
        return out_bn[:, :n_heads], out_bn[:, n_heads:]

    def plan(self, net, window_bt):
        """`window_bt` holds the inputs and, for the oracle only, one more token (its gradient target)."""
        spec, layout = self.spec, self.layout
        if self.source == "oracle":
            return plans.fixed_plan(net, spec, importance.importance(net, spec, window_bt, self.criterion),
                                    self.counts, self.mode)
        inputs_bt = window_bt[:, :-1]
        if self.source == "shadow":
            out_bn = predictors.mlp(self.mlps["shadow"], plans.shadow_features(net, spec, inputs_bt, self.at))
            scores = plans.unflatten(layout, *self._split(out_bn, layout.total_heads))
            return plans.fixed_plan(net, spec, scores, self.counts, self.mode)

        def predict_layer(layer, x_bd):
            info = layout.layers[layer]
            return self._split(predictors.mlp(self.mlps[layer], x_bd), info.groups * info.heads)
        return plans.per_layer_plan(net, spec, layout, predict_layer, self.at, self.counts, self.mode)

    def predictor_only(self, net, window_bt):
        """The work the selection costs, without the model's forward (DejaVu: its L MLPs on one input)."""
        if self.source == "oracle":
            return importance.importance(net, self.spec, window_bt, self.criterion)
        if self.source == "shadow":
            return predictors.mlp(self.mlps["shadow"], plans.shadow_features(net, self.spec, window_bt[:, :-1], self.at))
        x_bd = net.embed_vd[window_bt[:, self.at]]
        return [predictors.mlp(self.mlps[layer], x_bd) for layer in range(len(self.layout.layers))]


def _ms(fn, *args, repeats: int) -> list[float]:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(1e3 * (time.perf_counter() - began))
    return times


def _summary(times: list[float]) -> dict:
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99))}


def _decode_step_times(net, spec, selector, prompt_window_bt, seq_len, steps: int) -> list[float]:
    """Prefill the prompt (selection included), then time each one-token step on the KV cache."""
    at = prompt_window_bt.shape[1] - 2

    @jax.jit
    def prefill(net, window_bt):
        recorded, chosen_plan = [], selector.plan(net, window_bt) if selector else None

        def plan(layer, x_bgtd):
            sel = chosen_plan(layer, x_bgtd)
            recorded.append((sel.weights, sel.head_scale_bgh, sel.neuron_scale_bgf))
            return sel
        cache = decode.init_cache(net, spec, 1, seq_len, selector.kept_heads if selector else None)
        logits, cache, _ = decode.forward(net, spec, window_bt[:, :at + 1], cache, 0, plan if selector else None)
        return logits[:, -1].argmax(-1), cache, tuple(recorded)

    @jax.jit
    def step(net, chosen, token_b, cache, pos):
        plan = None if not chosen else (
            lambda layer, _x: decode.Selection(chosen[layer][0], selector.kept_heads[layer], *chosen[layer][1:]))
        logits, cache, _ = decode.forward(net, spec, token_b[:, None], cache, pos, plan)
        return logits[:, 0].argmax(-1), cache

    token, cache, chosen = prefill(net, prompt_window_bt)
    jax.block_until_ready(step(net, chosen, token, cache, at + 1))
    times = []
    for pos in range(at + 1, min(seq_len, at + 1 + steps)):
        began = time.perf_counter()
        token, cache = jax.block_until_ready(step(net, chosen, token, cache, pos))
        times.append(1e3 * (time.perf_counter() - began))
    return times


def evaluate(run_dir: Path, sparsity: float, mode: str, predictor_dir: Path | None, oracle: bool,
             criterion: str = "plainact", batches: int = 4, batch: int = 8, repeats: int = 20, latency: bool = True) -> dict:
    check_sparsity(sparsity)
    if mode not in MODES:
        raise UserError(f"--mode: must be one of {MODES}, got {mode!r}")
    if oracle == (predictor_dir is not None):
        raise UserError("--predictor-dir/--oracle: pass exactly one of them")
    if criterion not in CRITERIA:
        raise UserError(f"--criterion: must be one of {CRITERIA}, got {criterion!r}")
    if batches < 1 or repeats < 1:
        raise UserError(f"--batches/--repeats: must be >= 1, got {batches}/{repeats}")
    mlps, meta = load_predictor(predictor_dir) if predictor_dir is not None else ({}, {})
    cfg, net, spec = load_net(run_dir)
    layout, at, seq_len = layout_for(cfg.model), prompt_position(cfg), cfg.model.seq_len
    counts = keep_counts(layout, sparsity)
    source = "oracle" if oracle else meta["predictor"]
    prunes = any(k_h < l.heads or k_f < l.neurons for (k_h, k_f), l in zip(counts, layout.layers))
    selector = Selector(spec, layout, counts, mode, at, mlps, source, criterion) if prunes else None

    def ce(net, window_bt, sparse: bool):
        inputs_bt, targets_bt = window_bt[:, :-1], window_bt[:, 1:]
        plan = selector.plan(net, window_bt) if sparse and selector else None
        kept = selector.kept_heads if sparse and selector else None
        return decode.continuation_ce(decode.full_logits(net, spec, inputs_bt, plan, kept), targets_bt, at + 1)

    sparse_ce, dense_ce = jax.jit(lambda n, w: ce(n, w, True)), jax.jit(lambda n, w: ce(n, w, False))
    windows = list(eval_batches(load_text(cfg).val, batch, seq_len, batches))
    val_sparse = float(np.mean([sparse_ce(net, w) for w in windows]))
    val_dense = float(np.mean([dense_ce(net, w) for w in windows]))

    result = {
        "sparsity": sparsity, "mode": mode, "source": source,
        "criterion": criterion if oracle else meta["criterion"],
        "val_bpb": bits_per_byte(val_sparse), "dense_val_bpb": bits_per_byte(val_dense),
        "kept_heads": sum(l.groups * k for l, (k, _) in zip(layout.layers, counts)), "total_heads": layout.total_heads,
        "kept_neurons": sum(l.groups * k for l, (_, k) in zip(layout.layers, counts)),
        "total_neurons": layout.total_neurons, "predictor_flops": meta.get("predictor_flops"),
        "latency_ms": None, "predictor_ms": None,
    }
    if latency:
        result.update(_latency(net, spec, selector, windows[0], at, seq_len, repeats))
    return result


def _latency(net, spec, selector, windows_bt, at: int, seq_len: int, repeats: int) -> dict:
    prefill = jax.jit(lambda n, w: decode.full_logits(n, spec, w[:, :-1], selector.plan(n, w) if selector else None,
                                                      selector.kept_heads if selector else None))
    one = windows_bt[:1, :at + 2]
    predictor_ms = _summary(_ms(jax.jit(selector.predictor_only), net, one, repeats=repeats))["p50"] if selector else 0.0
    return {"latency_ms": {"decode_b1": _summary(_decode_step_times(net, spec, selector, one, seq_len, repeats)),
                           f"prefill_b{windows_bt.shape[0]}": _summary(_ms(prefill, net, windows_bt, repeats=repeats))},
            "predictor_ms": predictor_ms}
