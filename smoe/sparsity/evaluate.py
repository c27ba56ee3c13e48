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

from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from smoe.accounting import sparse_flops_per_token
from smoe.data import bits_per_byte, eval_batches
from smoe.errors import UserError
from smoe.measure.timing import time_round_robin
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


class Context(NamedTuple):
    """A run loaded once: its config, flattened params, layout, prompt position and val windows."""

    cfg: object
    net: decode.Net
    spec: decode.Spec
    layout: object
    at: int
    windows: list  # [batch, seq_len + 1] token windows from the val split


def load_context(run_dir: Path, batches: int = 4, batch: int = 8) -> Context:
    if batches < 1:
        raise UserError(f"--batches: must be >= 1, got {batches}")
    cfg, net, spec = load_net(run_dir)
    windows = list(eval_batches(load_text(cfg).val, batch, cfg.model.seq_len, batches))
    return Context(cfg, net, spec, layout_for(cfg.model), prompt_position(cfg), windows)


def make_selector(ctx: Context, sparsity: float, mode: str, source: str, mlps: dict, criterion: str
                  ) -> Selector | None:
    """The selection at this sparsity, or None where every layer keeps everything (the dense program)."""
    check_sparsity(sparsity)
    if mode not in MODES:
        raise UserError(f"--mode: must be one of {MODES}, got {mode!r}")
    counts = keep_counts(ctx.layout, sparsity)
    if all(k_h == l.heads and k_f == l.neurons for (k_h, k_f), l in zip(counts, ctx.layout.layers)):
        return None
    return Selector(ctx.spec, ctx.layout, counts, mode, ctx.at, mlps, source, criterion)


def val_ce(ctx: Context, selector: Selector | None) -> float:
    """Mean continuation cross-entropy (nats) over the context's val windows."""
    spec, at = ctx.spec, ctx.at

    @jax.jit
    def ce(net, window_bt):
        inputs_bt, targets_bt = window_bt[:, :-1], window_bt[:, 1:]
        plan, kept = (selector.plan(net, window_bt), selector.kept_heads) if selector else (None, None)
        return decode.continuation_ce(decode.full_logits(net, spec, inputs_bt, plan, kept), targets_bt, at + 1)
    return float(np.mean([ce(ctx.net, w) for w in ctx.windows]))


def latency_programs(ctx: Context, selector: Selector | None, tag: str = "") -> dict:
    """Zero-argument programs to time: one batch-1 decode step on the KV cache (the selection made at
    prefill and fixed), the batch-1 prompt prefill that makes the selection, a batch-8 full-window
    prefill with its selection, and the predictor alone.
    A step's cost does not depend on its position: the cache has a static length."""
    net, spec, at, seq_len = ctx.net, ctx.spec, ctx.at, ctx.cfg.model.seq_len
    windows_bt = ctx.windows[0]
    one = windows_bt[:1, :at + 2]

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

    full = jax.jit(lambda n, w: decode.full_logits(n, spec, w[:, :-1], selector.plan(n, w) if selector else None,
                                                   selector.kept_heads if selector else None))
    token, cache, chosen = prefill(net, one)
    programs = {f"{tag}decode_b1": lambda: step(net, chosen, token, cache, at + 1),
                f"{tag}prompt_b1": lambda: prefill(net, one),
                f"{tag}prefill_b{windows_bt.shape[0]}": lambda: full(net, windows_bt)}
    if selector:
        predictor_only = jax.jit(selector.predictor_only)
        programs[f"{tag}predictor"] = lambda: predictor_only(net, one)
    return programs


def time_programs(programs: dict, repeats: int) -> dict:
    """p50/p99 wall milliseconds of each program, the programs taking turns (smoe.measure.timing)."""
    timings = time_round_robin(programs, repeats=repeats)
    return {name: {"p50": float(np.percentile(t["samples_s"], 50)) * 1e3,
                   "p99": float(np.percentile(t["samples_s"], 99)) * 1e3} for name, t in timings.items()}


def evaluate(run_dir: Path, sparsity: float, mode: str, predictor_dir: Path | None, oracle: bool,
             criterion: str = "plainact", batches: int = 4, repeats: int = 20, latency: bool = True) -> dict:
    check_sparsity(sparsity)
    if oracle == (predictor_dir is not None):
        raise UserError("--predictor-dir/--oracle: pass exactly one of them")
    if criterion not in CRITERIA:
        raise UserError(f"--criterion: must be one of {CRITERIA}, got {criterion!r}")
    if repeats < 1:
        raise UserError(f"--repeats: must be >= 1, got {repeats}")
    mlps, meta = load_predictor(predictor_dir) if predictor_dir is not None else ({}, {})
    ctx = load_context(run_dir, batches)
    source = "oracle" if oracle else meta["predictor"]
    selector = make_selector(ctx, sparsity, mode, source, mlps, criterion)
    counts = keep_counts(ctx.layout, sparsity)
    result = {
        "sparsity": sparsity, "mode": mode, "source": source,
        "criterion": criterion if oracle else meta["criterion"],
        "val_bpb": bits_per_byte(val_ce(ctx, selector)), "dense_val_bpb": bits_per_byte(val_ce(ctx, None)),
        "kept_heads": sum(l.groups * k for l, (k, _) in zip(ctx.layout.layers, counts)),
        "total_heads": ctx.layout.total_heads,
        "kept_neurons": sum(l.groups * k for l, (_, k) in zip(ctx.layout.layers, counts)),
        "total_neurons": ctx.layout.total_neurons, "predictor_flops": meta.get("predictor_flops"),
        # the oracle's selection (a backward pass) is not a deployable cost and is not counted
        "flops_per_token": sparse_flops_per_token(ctx.cfg.model, sparsity, mode, meta.get("predictor_flops") or 0.0),
        "latency_ms": None, "predictor_ms": None,
    }
    if latency:
        times = time_programs(latency_programs(ctx, selector), repeats)
        result["predictor_ms"] = times.pop("predictor", {"p50": 0.0})["p50"]
        result["latency_ms"] = times
    return result
