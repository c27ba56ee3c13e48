"""Serving-style latency of adaptive routing vs top-2, measured side by side in one run.

    python benchmarks/serving_latency.py [--set model.d_model=256 ...] [--repeats 200] [--out FILE.json]

Per-token latency of one scoring forward (the model's own loss forward, `smoe.measure.programs`)
over a batch of B sequences of seq_len tokens: call time / (B x seq_len), at B = 1 and B = 16, p50
and p99 over `--repeats` calls per program. Every (router, batch) program takes its turn in each
round (`time_round_robin`), so machine drift hits all alike and the ratios to top-2 compare like
with like. The adaptive routers run with expert capacity sized for k_target and k_cap = 2 choice
columns, so a lower k_target is less work in the compiled program, not masked work. Latency does
not depend on the weights (shapes are static), so the models are freshly initialised.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from smoe import accounting, atomic
from smoe.config import apply_overrides, config_from_dict

BASE = {"model": {"kind": "topk", "d_model": 128, "n_layers": 4, "n_heads": 8, "seq_len": 128, "n_experts": 8,
                  "capacity_factor": 1.25},
        "mesh": {"data": 1, "expert": 1}, "data": {"corpus": "unused"}}
# router name -> model overrides; top-2 is the baseline every ratio divides by
ROUTERS = {
    "top2": {"top_k": 2},
    "top1": {"top_k": 1},
    "controlled_k1.75": {"routing": "controlled", "k_target": 1.75, "k_cap": 2},
    "controlled_k1.5": {"routing": "controlled", "k_target": 1.5, "k_cap": 2},
}
BATCHES = (1, 16)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. model.d_model=256")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per program (p99 needs >= 100)")
    parser.add_argument("--out", help="write the JSON result here too")
    args = parser.parse_args()
    raw = apply_overrides(BASE, args.set)

    from smoe.measure.programs import forward_program
    from smoe.measure.record import context
    from smoe.measure.timing import time_round_robin

    programs, facts = {}, {}
    for router, overrides in ROUTERS.items():
        for batch in BATCHES:
            flat = [f"model.{key}={value}" for key, value in overrides.items()] + [f"train.batch_size={batch}"]
            cfg = config_from_dict(apply_overrides(raw, flat))
            name, tokens = f"{router}/batch{batch}", batch * cfg.model.seq_len
            programs[name] = forward_program(cfg).run
            facts[name] = {"overrides": overrides, "tokens_per_call": tokens,
                                      "forward_flops_per_token": accounting.analytic_flops(cfg.model, batch) / tokens,
                                      "slot_flops_per_token": accounting.slot_flops(cfg.model, batch) / tokens}
    timings = time_round_robin(programs, warmup=5, repeats=args.repeats)

    result = {"base": raw, "repeats": args.repeats, **context(), "latency": {}}
    for name, timing in timings.items():
        per_token = np.asarray(timing["samples_s"]) / facts[name]["tokens_per_call"]
        result["latency"][name] = facts[name] | {
            "p50_s_per_token": float(np.percentile(per_token, 50)),
            "p99_s_per_token": float(np.percentile(per_token, 99))}
    for batch in BATCHES:
        base = result["latency"][f"top2/batch{batch}"]
        for router in ROUTERS:
            row = result["latency"][f"{router}/batch{batch}"]
            for name in ("p50_s_per_token", "p99_s_per_token", "slot_flops_per_token", "forward_flops_per_token"):
                row[f"{name.removesuffix('_s_per_token').removesuffix('_per_token')}_vs_top2"] = row[name] / base[name]
            print(f"batch {batch:2d} {router:17s} p50 {row['p50_s_per_token'] * 1e6:8.2f} us/token "
                  f"p99 {row['p99_s_per_token'] * 1e6:8.2f}  vs top-2: p50 {row['p50_vs_top2']:.3f} "
                  f"p99 {row['p99_vs_top2']:.3f} slot FLOPs {row['slot_flops_vs_top2']:.3f} "
                  f"forward FLOPs {row['forward_flops_vs_top2']:.3f}")
    if args.out:
        atomic.write_text(args.out, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
