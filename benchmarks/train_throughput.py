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
import sys

from smoe import accounting, atomic
from smoe.config import MODEL_KINDS, apply_overrides, config_from_dict
from smoe.launch import emulate_cpu_devices


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

    from smoe.measure.analysis import xla_cost
    from smoe.measure.programs import train_step_program
    from smoe.measure.record import context
    from smoe.measure.timing import time_round_robin

    tokens_per_step = base.train.batch_size * base.model.seq_len
    runs, facts = {}, {}
    for kind in MODEL_KINDS:
        cfg = config_from_dict(apply_overrides(raw, [f"model.kind={kind}"]))
        program = train_step_program(cfg)
        analytic = accounting.TRAIN_FLOPS_PER_FORWARD * accounting.analytic_flops(cfg.model, base.train.batch_size)
        facts[kind] = {"params": accounting.params_total(cfg.model),
                       "analytic_train_flops_per_token": analytic / tokens_per_step,
                       "xla_train_flops_per_token": xla_cost(program.compiled)["xla_flops"] / tokens_per_step}

        def run(program=program):
            for _ in range(args.steps):
                metrics = program.run()
            return metrics

        runs[kind] = run
    timings = time_round_robin(runs, repeats=args.rounds)
    seconds = {kind: [s / args.steps for s in timing["samples_s"]] for kind, timing in timings.items()}

    result = {"model": base.model.__dict__, "mesh": base.mesh.__dict__, "batch_size": base.train.batch_size,
              "rounds": args.rounds, "steps_per_round": args.steps, **context(), "families": {}}
    dense_median = timings["dense"]["median_s"] / args.steps
    for kind in MODEL_KINDS:
        median = timings[kind]["median_s"] / args.steps
        result["families"][kind] = facts[kind] | {
            "median_step_s": median, "tokens_per_s": tokens_per_step / median,
            "step_time_vs_dense": median / dense_median, "samples_step_s": seconds[kind]}
    for kind, row in result["families"].items():
        print(f"{kind:10s} params {row['params']:>10,d}  train FLOPs/token analytic "
              f"{row['analytic_train_flops_per_token']:>12,.0f} XLA {row['xla_train_flops_per_token']:>12,.0f}"
              f"  tokens/s {row['tokens_per_s']:>9,.0f}  step time / dense {row['step_time_vs_dense']:.2f}")
    if args.out:
        atomic.write_text(args.out, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
