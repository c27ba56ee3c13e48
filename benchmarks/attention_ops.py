"""Sparse-attention op time against dense attention, and the train step with each, side by side in rounds.

    python benchmarks/attention_ops.py [--seq 512 1024 2048] [--rounds 5] [--out FILE.json]

Per L (k = L/8 by default, so k = 256 at L = 2048) one round times, taking turns in a shuffled order:
the model's dense attention (`layers.causal_attention`, reference kernel), and the indexed attention
(`sparse_attention.indexed_attention`: indexer, top-k, attention) in each mode (mask, gather,
block), forward and forward+backward; and the main attention alone on a given selection
(`attend_gather`, `attend_mask`), which is the part whose FLOPs drop from L^2 to L k while the
indexer keeps its L^2 H_I d_I. Then the train step of experiments/configs/sparse_attention.yaml with
dense, mask and gather attention. Reports medians and ratios to dense; the analytic FLOP ratio
beside them (smoe.sparse_attention_cost).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from smoe import atomic
from smoe.config import ModelConfig, load_config
from smoe.errors import UserError

D_MODEL, HEADS, INDEXER_HEADS, INDEXER_DIM, BLOCK, BATCH = 128, 4, 4, 16, 16, 1
REPO = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = "experiments/configs/sparse_attention.yaml"  # relative to REPO


def _attention_units(seq: int, topk: int, with_backward: bool):
    import jax
    import jax.numpy as jnp

    from smoe.models import sparse_attention as sa
    from smoe.models.layers import causal_attention, split_heads

    rng = np.random.default_rng(seq)
    h = jnp.asarray(rng.standard_normal((BATCH, seq, D_MODEL)), jnp.float32)
    w_qkv = jnp.asarray(0.1 * rng.standard_normal((D_MODEL, 3 * D_MODEL)), jnp.float32)
    w_o = jnp.asarray(0.1 * rng.standard_normal((D_MODEL, D_MODEL)), jnp.float32)
    iw = sa.IndexerParams(D_MODEL, INDEXER_HEADS, INDEXER_DIM, rng).weights()
    spec = lambda mode: sa.SparseSpec(topk, mode, BLOCK, INDEXER_HEADS, INDEXER_DIM)  # noqa: E731
    ops = {"dense": lambda h, w: causal_attention(h, w, w_o, HEADS)}
    for mode in ("mask", "gather", "block"):
        ops[mode] = lambda h, w, mode=mode: sa.indexed_attention(h, w, w_o, iw, HEADS, spec(mode))[0]
    # the main attention alone, on the indexer's selection computed once outside the timed program
    idx, valid = sa.select_topk(sa.indexer_scores(h, iw, INDEXER_HEADS, INDEXER_DIM), topk)
    allowed = sa.selection_mask(idx, valid, seq)
    ops["mask_main"] = lambda h, w: sa.attend_mask(*split_heads(h, w, HEADS), allowed)[0]
    ops["gather_main"] = lambda h, w: sa.attend_gather(*split_heads(h, w, HEADS), idx, valid)[0]
    units = {}
    for name, op in ops.items():
        forward = jax.jit(op)
        units[name] = {f"{name}/forward": lambda f=forward: f(h, w_qkv)}
        if with_backward:
            grad = jax.jit(jax.grad(lambda h, w, op=op: jnp.sum(op(h, w) ** 2), argnums=(0, 1)))
            units[name][f"{name}/forward_backward"] = lambda g=grad: g(h, w_qkv)
    return units


def _train_units(steps_per_call: int):
    from smoe.measure.programs import train_step_program

    units, facts = {}, {}
    arms = {"dense": [], "mask": ["model.attention=indexer", "train.stage=sparse", "model.attention_mode=mask"],
            "gather": ["model.attention=indexer", "train.stage=sparse", "model.attention_mode=gather"]}
    for arm, overrides in arms.items():
        cfg = load_config(REPO / TRAIN_CONFIG, overrides + ["model.attention_topk=64"])
        program = train_step_program(cfg)

        def run(program=program):
            for _ in range(steps_per_call):
                metrics = program.run()
            return metrics

        units[f"train_{arm}"] = {f"train_{arm}/step": run}
        facts = {"seq_len": cfg.model.seq_len, "topk": cfg.model.attention_topk, "batch_size": cfg.train.batch_size,
                 "d_model": cfg.model.d_model, "n_layers": cfg.model.n_layers, "config": TRAIN_CONFIG}
    return units, facts


def _summary(samples: dict[str, list[float]], per_call: int = 1) -> dict:
    medians = {name: statistics.median(s) / per_call for name, s in samples.items()}
    out = {}
    for name, median in medians.items():
        unit, phase = name.split("/")
        dense = medians.get(f"{'train_dense' if unit.startswith('train_') else 'dense'}/{phase}")
        out[name] = {"median_s": median, "vs_dense": median / dense if dense else None,
                     "samples_s": [s / per_call for s in samples[name]]}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--topk-fraction", type=float, default=1 / 8, help="k = L x this")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backward-up-to", type=int, default=2048, help="also time fwd+bwd for L up to this")
    parser.add_argument("--train-steps", type=int, default=2, help="train steps per timed call (0: skip)")
    parser.add_argument("--out", help="write the JSON result here too")
    args = parser.parse_args()
    for seq in args.seq:  # block mode's shape rules live in ModelConfig; ask it rather than restate them
        try:
            ModelConfig(seq_len=seq, d_model=D_MODEL, n_heads=HEADS, attention="indexer", attention_mode="block",
                        attention_topk=int(seq * args.topk_fraction), attention_block=BLOCK,
                        indexer_heads=INDEXER_HEADS, indexer_dim=INDEXER_DIM)
        except UserError as error:
            parser.error(f"--seq {seq} with --topk-fraction {args.topk_fraction}: {error}")

    from smoe.measure.record import context
    from smoe.measure.timing import time_rounds
    from smoe.sparse_attention_cost import attended_keys

    result = {"d_model": D_MODEL, "heads": HEADS, "indexer_heads": INDEXER_HEADS, "indexer_dim": INDEXER_DIM,
              "block": BLOCK, "batch": BATCH, "rounds": args.rounds, **context(), "attention": {}}
    for seq in args.seq:
        topk = int(seq * args.topk_fraction)
        units = _attention_units(seq, topk, seq <= args.backward_up_to)
        timed = time_rounds(units, args.rounds, warmup=1, seed=seq)
        keys = {mode: attended_keys(mode, seq, topk, BLOCK) for mode in ("mask", "gather", "block")}
        result["attention"][str(seq)] = {
            "topk": topk, "main_attention_flops_vs_dense": {mode: k / seq for mode, k in keys.items()},
            "indexer_score_flops_vs_dense": INDEXER_HEADS * INDEXER_DIM / D_MODEL,
            "ops": _summary(timed["samples_s"])}
        row = result["attention"][str(seq)]["ops"]
        print(f"L={seq} k={topk}: " + "  ".join(f"{name} {r['median_s'] * 1e3:.1f} ms ({r['vs_dense']:.2f}x)"
                                                  for name, r in row.items()), flush=True)
    if args.train_steps:
        units, facts = _train_units(args.train_steps)
        timed = time_rounds(units, args.rounds, warmup=1, seed=0)
        result["train_step"] = facts | {"steps_per_call": args.train_steps,
                                        "arms": _summary(timed["samples_s"], args.train_steps)}
        print("train step: " + "  ".join(f"{name} {r['median_s'] * 1e3:.0f} ms ({r['vs_dense']:.2f}x)"
                                         for name, r in result["train_step"]["arms"].items()), flush=True)
    if args.out:
        atomic.write_text(args.out, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
