"""Does the sectional model's step time follow its FLOPs? Dense and sectional (one per E) train steps
timed side by side in shuffled rounds, on one device or an emulated mesh.

    python benchmarks/sectional_speed.py [--experts 1,2,4,8,16] [--devices 1] [--rounds 5] [--steps 3]
                                         [--set model.d_model=256 ...] [--out FILE.json] [--profile MODEL]

Per E: the FLOP ratio (sectional/dense analytic train FLOPs), the step-time ratio (median over
rounds of sectional/dense step time within the round), the speedup over dense relative to the
FLOP-predicted one (flop ratio / step-time ratio; 1.0 = time follows FLOPs), and each model's
achieved analytic FLOP/s as a fraction of this machine's fp32 matmul peak (`smoe measure`'s
yardstick: one n x n matmul on one device, measured before and after the rounds), and the rate of
the model's FFN input matmul alone at its own shape (experts' width d/E, batched over E) as a
fraction of the same peak: what the narrow matmuls can reach at best. The mesh for E is
`smoe measure`'s `devices: N` rule: expert = gcd(E, N), data = N / expert.

`--profile dense` (or E4, ...) instead traces `--steps` train steps of that model with
jax.profiler and prints where the op time goes: by kind of XLA op (the name without its number)
and the top single ops (look them up in the compiled train step's as_text()). Measured that way
(default size, one CPU device, 5 steps, shares of summed op time) before the FFN's backward was
written out: dense - matmul fusions 46 %, copy fusions 24 % (of which the four [512, 2048]
gelu-backward fusions that write transposed 21 %), eigen dots 7 %; sectional E=4 - matmul fusions
44 %, copy fusions 18 % (gelu backward 10 %), the experts' batched weight-gradient eigen dots 8 %,
attention mask/softmax fusions over [E, b, 1, t, t] 1 to 2 % each (as much elementwise work as
dense's [b, h, t, t] at E = h, E/h times more above).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import re
import statistics
import sys
import tempfile

from smoe import accounting, atomic
from smoe.config import apply_overrides, config_from_dict
from smoe.launch import emulate_cpu_devices


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experts", type=_ints, default=[1, 2, 4, 8, 16])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="train steps per timed call")
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. model.d_model=256")
    parser.add_argument("--out", help="write the JSON result here too")
    parser.add_argument("--profile", metavar="MODEL", help="trace this model (dense, E4, ...) instead of timing")
    args = parser.parse_args()
    emulate_cpu_devices(args.devices)

    from smoe.measure.peak import matmul_peak_flops
    from smoe.measure.point import mesh_for_experts
    from smoe.measure.programs import train_step_program
    from smoe.measure.record import context
    from smoe.measure.timing import time_rounds

    raw = apply_overrides({"data": {"corpus": "unused"}}, args.set)
    configs = {"dense": config_from_dict(apply_overrides(raw, [
        "model.kind=dense", f"mesh.data={args.devices}", "mesh.expert=1"]))}
    for e in args.experts:
        data, expert = mesh_for_experts(e, args.devices)
        configs[f"E{e}"] = config_from_dict(apply_overrides(raw, [
            "model.kind=sectional", f"model.n_experts={e}", f"mesh.data={data}", f"mesh.expert={expert}"]))
    units = {}
    for name, cfg in configs.items():
        program = train_step_program(cfg)

        def run(program=program):
            for _ in range(args.steps):
                metrics = program.run()
            return metrics

        units[name] = {name: run}
    if args.profile:
        return profile(units[args.profile][args.profile], args.steps)
    peaks = [matmul_peak_flops()]
    samples = time_rounds(units, args.rounds, seed=0)["samples_s"]
    peaks.append(matmul_peak_flops())
    peak = statistics.mean(peaks)

    def train_flops(cfg):
        return accounting.TRAIN_FLOPS_PER_FORWARD * accounting.analytic_flops(cfg.model, cfg.train.batch_size)

    ffn_rate = {name: ffn_matmul_flops(cfg) for name, cfg in configs.items()}
    step_s = {name: [s / args.steps for s in samples[name]] for name in configs}
    rows = {}
    for name, cfg in configs.items():
        median = statistics.median(step_s[name])
        flop_ratio = train_flops(cfg) / train_flops(configs["dense"])
        step_ratio = statistics.median(s / d for s, d in zip(step_s[name], step_s["dense"]))
        rows[name] = {"E": cfg.model.n_experts if name != "dense" else None,
                      "mesh": f"{cfg.mesh.data}x{cfg.mesh.expert}", "train_flops": train_flops(cfg),
                      "median_step_s": median, "flop_ratio": flop_ratio, "step_time_ratio": step_ratio,
                      "speedup_vs_predicted": flop_ratio / step_ratio,
                      "fraction_of_matmul_peak": train_flops(cfg) / median / peak,
                      "ffn_matmul_fraction_of_peak": ffn_rate[name] / peak, "samples_step_s": step_s[name]}
    result = {"model": configs["dense"].model.__dict__, "batch_size": configs["dense"].train.batch_size,
              "devices": args.devices, "rounds": args.rounds, "steps_per_call": args.steps,
              "matmul_peak_flops": peak, "matmul_peak_samples": peaks, "command": " ".join(sys.argv),
              **context(), "rows": rows}
    print(f"devices {args.devices}; fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'model':>6s} {'mesh':>5s} {'step ms':>8s} {'flops/dense':>11s} {'time/dense':>10s} "
          f"{'speedup/predicted':>17s} {'of peak':>7s} {'ffn matmul of peak':>18s}")
    for name, row in rows.items():
        print(f"{name:>6s} {row['mesh']:>5s} {1e3 * row['median_step_s']:8.1f} {row['flop_ratio']:11.3f} "
              f"{row['step_time_ratio']:10.3f} {row['speedup_vs_predicted']:17.3f} "
              f"{row['fraction_of_matmul_peak']:7.1%} {row['ffn_matmul_fraction_of_peak']:18.1%}")
    if args.out:
        atomic.write_text(args.out, json.dumps(result, indent=1))
    return 0


def ffn_matmul_flops(cfg) -> float:
    """FLOP/s of the model's FFN input matmul alone at its own shape: [tokens, d] x [d, 4d] for dense,
    batched over E at width d/E for sectional (as the experts run it, all E in one einsum). How far
    the narrow experts' matmuls fall below the big one bounds how closely step time can follow FLOPs."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from smoe.measure.timing import time_fn

    m = cfg.model
    experts = m.n_experts if m.kind == "sectional" else 1
    width, tokens = m.d_model // experts, cfg.train.batch_size * m.seq_len
    rng = np.random.default_rng(0)
    x_etd = jnp.asarray(rng.standard_normal((experts, tokens, width), dtype=np.float32))
    w_edf = jnp.asarray(rng.standard_normal((experts, width, m.ffn_mult * width), dtype=np.float32))
    timing = time_fn(jax.jit(lambda x, w: jnp.einsum("etd,edf->etf", x, w)), x_etd, w_edf, repeats=9)
    return 2.0 * experts * tokens * width * m.ffn_mult * width / timing["median_s"]


def profile(run, steps: int, top: int = 25) -> int:
    """Per-op time of `run` (which runs `steps` train steps) from a jax.profiler trace."""
    import jax

    jax.block_until_ready(run())  # compiled and warm before the trace
    with tempfile.TemporaryDirectory(prefix="smoe-profile-") as trace_dir:
        with jax.profiler.trace(trace_dir):
            jax.block_until_ready(run())
        trace = jax.profiler.ProfileData.from_file(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0])
    # XLA's ops run on the CPU client's worker threads; the rest are host-side waits and Python
    ops = collections.Counter()
    for plane in trace.planes:
        for line in plane.lines:
            if line.name.startswith("tf_XLA"):
                for event in line.events:
                    if not event.name.startswith(("ThunkExecutor", "SlinkyThreadPool")):
                        ops[event.name] += event.duration_ns / steps
    total = sum(ops.values())
    kinds = collections.Counter()
    for name, ns in ops.items():
        kinds[re.sub(r"\.\d+$", "", name)] += ns
    print(f"op time per train step {total / 1e6:.1f} ms (summed over threads)")
    for name, ns in kinds.most_common(12):
        print(f"  {name:32s} {ns / 1e6:8.2f} ms {ns / total:6.1%}")
    for name, ns in ops.most_common(top):
        print(f"    {name:32s} {ns / 1e6:8.2f} ms {ns / total:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
