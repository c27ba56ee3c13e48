"""One-call accelerator benchmark: MFU and step-time ratios of dense / top-k / sectional in bf16.

    python benchmarks/gpu_mfu.py --out benchmarks/results/gpu_mfu_<device>.json [--budget-s 420]
    python benchmarks/gpu_mfu.py --allow-cpu --out /tmp/smoke.json   # tiny sizes, a smoke test only

For each size (d in {1024, 2048} x L in {1024, 2048}) it compiles the dense model, top-k (E=8, k=2)
and sectional with E in {1, 2, 4, 8, 16, 32}, then times their train steps in turn (smoe's
`time_round_robin`), so the ratios over dense at one size are measured side by side. MFU is the
analytic train FLOPs (smoe.accounting: 3 x the forward's matmul FLOPs, attention included) per
second over the device's published dense bf16 peak; the fraction of a measured bf16 matmul peak is
reported beside it. Heads are 128 wide (fewer only where an expert slice is narrower). Attention
runs cudnn flash attention on an NVIDIA GPU, falling back to XLA's where cudnn refuses a shape
(the row says which). Sizes are done largest first; past --budget-s no new model is compiled and
the JSON lists what was skipped. The JSON is rewritten after every size, so a kill keeps the rest.
Needs only smoe and the jax/flax/optax already installed (no exact versions).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from smoe import accounting, atomic
from smoe.config import config_from_dict

# Published dense (no sparsity) bf16 tensor-core peaks in FLOP/s, by a substring of jax's device_kind;
# the first match wins, so the PCIe H100 comes before the SXM one.
PUBLISHED_BF16_PEAK = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12),
                       ("TPU v4", 275e12), ("TPU v5 lite", 197e12), ("TPU v5p", 459e12))
FULL = {"d": (2048, 1024), "L": (2048, 1024), "E": (1, 2, 4, 8, 16, 32), "layers": 4, "batch": 8, "head": 128,
        "topk_experts": 8}
# --allow-cpu: small enough to compile and run in seconds on a laptop core
TINY = {"d": (64,), "L": (32,), "E": (1, 4), "layers": 2, "batch": 2, "head": 16, "topk_experts": 4}


def published_peak(device_kind: str) -> float | None:
    return next((peak for name, peak in PUBLISHED_BF16_PEAK if name.lower() in device_kind.lower()), None)


def model_variants(d: int, sizes: dict) -> list[tuple[str, dict]]:
    """(name, model keys) of every model measured at width d."""
    heads = lambda width: max(1, width // sizes["head"])  # noqa: E731
    out = [("dense", {"kind": "dense"}),
           ("topk", {"kind": "topk", "n_experts": sizes["topk_experts"], "top_k": 2})]
    out += [(f"sectional_E{e}", {"kind": "sectional", "n_experts": e, "expert_heads": heads(d // e)})
            for e in sizes["E"] if d % e == 0]
    return [(name, {"d_model": d, "n_heads": heads(d), "n_layers": sizes["layers"], **keys}) for name, keys in out]


def run_config(model: dict, seq_len: int, batch: int, attention_impl: str):
    return config_from_dict({"model": {**model, "seq_len": seq_len, "compute_dtype": "bfloat16",
                                       "attention_impl": attention_impl},
                             "data": {"corpus": "unused"}, "train": {"batch_size": batch}})


def compile_step(model: dict, seq_len: int, batch: int, attention_impls: tuple[str, ...]):
    """(config, compiled train step, the attention kernel it got, why the preferred one was refused)."""
    from smoe.measure.programs import train_step_program

    refused = None
    for impl in attention_impls:
        cfg = run_config(model, seq_len, batch, impl)
        try:
            return cfg, train_step_program(cfg), impl, refused
        except Exception as err:  # cudnn refuses some shapes and dtypes at lowering; try the next kernel
            if impl == attention_impls[-1]:
                raise
            refused = f"{impl}: {str(err).splitlines()[0][:200]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the JSON result")
    parser.add_argument("--budget-s", type=float, default=420.0, help="no new compile after this many seconds")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per model")
    parser.add_argument("--allow-cpu", action="store_true", help="run on CPU at tiny sizes (a smoke test)")
    args = parser.parse_args()
    start = time.perf_counter()

    import jax

    from smoe.measure.peak import matmul_peak_flops
    from smoe.measure.record import context
    from smoe.measure.timing import time_round_robin

    backend = jax.default_backend()
    if backend == "cpu" and not args.allow_cpu:
        print("smoe: error: gpu_mfu.py measures an accelerator but jax sees only the CPU; run it on a GPU/TPU "
              "machine, or pass --allow-cpu for a tiny smoke test", file=sys.stderr)
        return 2
    sizes = TINY if backend == "cpu" else FULL
    impls = ("cudnn", "xla") if backend == "gpu" else ("xla",)
    device_kind = jax.devices()[0].device_kind
    peak = published_peak(device_kind)
    result = {**context(), "device_kind": device_kind, "published_bf16_peak_flops": peak,
              "measured_bf16_matmul_flops": matmul_peak_flops(n=4096 if backend != "cpu" else 256, dtype="bfloat16"),
              "sizes": sizes, "repeats": args.repeats, "rows": [], "skipped": []}
    for d in sizes["d"]:
        for seq_len in sizes["L"]:
            compiled = {}
            for name, model in model_variants(d, sizes):
                if time.perf_counter() - start > args.budget_s:
                    result["skipped"].append({"d": d, "L": seq_len, "model": name})
                    continue
                compiled[name] = compile_step(model, seq_len, sizes["batch"], impls)
            if not compiled:
                continue
            timings = time_round_robin({name: c[1].run for name, c in compiled.items()}, repeats=args.repeats)
            result["rows"] += rows_for_size(d, seq_len, sizes["batch"], compiled, timings, peak,
                                            result["measured_bf16_matmul_flops"])
            result["wall_s"] = time.perf_counter() - start
            atomic.write_text(args.out, json.dumps(result, indent=1))
    for row in result["rows"]:
        mfu = "-" if row["mfu"] is None else f"{row['mfu']:.3f}"
        print(f"d={row['d']:5d} L={row['L']:5d} {row['model']:14s} step {row['step_s'] * 1e3:9.2f} ms  MFU {mfu}  "
              f"of measured peak {row['fraction_of_measured_peak']:.3f}  step/dense {row['step_time_over_dense']:.3f}"
              f"  flops/dense {row['flops_over_dense']:.3f}  attention {row['attention_impl']}")
    if result["skipped"]:
        print(f"skipped past the {args.budget_s:.0f} s budget: {len(result['skipped'])} models", file=sys.stderr)
    return 0


def rows_for_size(d, seq_len, batch, compiled, timings, peak, measured_peak) -> list[dict]:
    rows = []
    for name, (cfg, _, impl, refused) in compiled.items():
        flops = accounting.TRAIN_FLOPS_PER_FORWARD * accounting.analytic_flops(cfg.model, batch)
        step_s = timings[name]["median_s"]
        rows.append({"d": d, "L": seq_len, "batch": batch, "model": name, "kind": cfg.model.kind,
                     "n_experts": cfg.model.n_experts, "attention_impl": impl, "cudnn_refused": refused,
                     "step_s": step_s, "samples_s": timings[name]["samples_s"], "analytic_train_flops": flops,
                     "mfu": None if peak is None else flops / step_s / peak,
                     "fraction_of_measured_peak": flops / step_s / measured_peak})
    dense = next((row for row in rows if row["model"] == "dense"), None)
    for row in rows:
        row["step_time_over_dense"] = None if dense is None else row["step_s"] / dense["step_s"]
        row["flops_over_dense"] = None if dense is None else row["analytic_train_flops"] / dense["analytic_train_flops"]
    return rows


if __name__ == "__main__":
    sys.exit(main())
