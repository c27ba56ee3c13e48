"""Train-step throughput of the three model families at one size, measured side by side in one run.

    python benchmarks/train_throughput.py [--set model.d_model=256 ...] [--rounds 7] [--out FILE.json]

Rounds alternate dense / topk / sectional so machine-speed drift hits all three alike; each round
times `--steps` jitted train steps after warm-up. Reports the median tokens/s per family, its ratio
to dense, parameter counts, and train FLOPs per token: analytic (3 x forward matmul FLOPs) and
XLA's count for the compiled train step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

from smoe.config import apply_overrides, config_from_dict
from smoe.launch import emulate_cpu_devices

KINDS = ("dense", "topk", "sectional")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. model.d_model=256")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--out", help="write the JSON result here too")
    args = parser.parse_args()
    raw = apply_overrides({"data": {"corpus": "unused"}}, args.set)
    base = config_from_dict(raw)
    emulate_cpu_devices(base.mesh.size)

    import jax
    from flax import nnx

    from smoe import sharding, steps
    from smoe.measure.analysis import TRAIN_FLOPS_PER_FORWARD, analytic_flops
    from smoe.models.lm import count_params, make_model

    mesh = sharding.make_mesh(base.mesh)
    tokens_per_step = base.train.batch_size * base.model.seq_len
    rng = np.random.default_rng(0)
    window = sharding.global_batch(
        rng.integers(0, 256, (base.train.batch_size, base.model.seq_len + 1), dtype=np.int32), mesh)
    programs, facts = {}, {}
    for kind in KINDS:
        cfg = config_from_dict(apply_overrides(raw, [f"model.kind={kind}"]))
        programs[kind] = steps.build(cfg, mesh)
        p = programs[kind]
        compiled = p.train_step.lower(p.params, p.opt_state, window).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        analytic = TRAIN_FLOPS_PER_FORWARD * analytic_flops(cfg.model, base.train.batch_size)
        facts[kind] = {"params": count_params(make_model(cfg.model, 0)),
                       "analytic_train_flops_per_token": analytic / tokens_per_step,
                       "xla_train_flops_per_token": float(cost["flops"]) / tokens_per_step}
        for _ in range(2):  # warm-up: compile and first-run allocation
            p.params, p.opt_state, m = p.train_step(p.params, p.opt_state, window)
        jax.block_until_ready(m)

    seconds = {kind: [] for kind in KINDS}
    for _ in range(args.rounds):
        for kind in KINDS:
            p = programs[kind]
            began = time.perf_counter()
            for _ in range(args.steps):
                p.params, p.opt_state, m = p.train_step(p.params, p.opt_state, window)
            jax.block_until_ready(m)
            seconds[kind].append((time.perf_counter() - began) / args.steps)

    result = {"model": base.model.__dict__, "mesh": base.mesh.__dict__, "batch_size": base.train.batch_size,
              "rounds": args.rounds, "steps_per_round": args.steps, "backend": jax.default_backend(),
              "devices": jax.device_count(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
              "jax": jax.__version__, "families": {}}
    dense_median = statistics.median(seconds["dense"])
    for kind in KINDS:
        median = statistics.median(seconds[kind])
        result["families"][kind] = facts[kind] | {
            "median_step_s": median, "tokens_per_s": tokens_per_step / median,
            "step_time_vs_dense": median / dense_median, "samples_step_s": seconds[kind]}
    for kind, row in result["families"].items():
        print(f"{kind:10s} params {row['params']:>10,d}  train FLOPs/token analytic "
              f"{row['analytic_train_flops_per_token']:>12,.0f} XLA {row['xla_train_flops_per_token']:>12,.0f}"
              f"  tokens/s {row['tokens_per_s']:>9,.0f}  step time / dense {row['step_time_vs_dense']:.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
