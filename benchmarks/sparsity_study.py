"""The contextual-sparsity study (smoe/sparsity, issue 16) from trained run dirs: one JSON and one figure.

    python benchmarks/sparsity_study.py --run dense=runs/sparsity_dense --run sectional=runs/sparsity_sectional \
        [--work runs/sparsity_study] [--out experiments/results/sparsity] [--sparsities 0.3 0.5 0.6 0.7]

Per run: collect importance targets per criterion (train windows), fit the shadow and dejavu
predictors on each, then score val bpb at every sparsity for every criterion x predictor arm (mask),
the two headline arms (plainact+shadow, l2norm+dejavu) also gathered (must equal mask), and the
oracle per criterion. Latency: per headline arm and `--latency-sparsities`, dense, masked and gathered
programs are timed taking turns in one round robin (batch-1 decode step on the KV cache, batch-1
prompt prefill with the selection, batch-8 full-window prefill, the predictor alone).
Datasets, predictors and finished models are kept under --work and reused on a rerun, so a killed
study resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from smoe import atomic

HEADLINE = (("plainact", "shadow"), ("l2norm", "dejavu"))
PREDICTORS = ("shadow", "dejavu")


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def prepare(run_dir: Path, work: Path, criteria, windows: int, epochs: int) -> dict:
    """Datasets and fitted predictors per (criterion, predictor), reusing what --work already holds."""
    from smoe.sparsity.dataset import collect
    from smoe.sparsity.fit import META_NAME, fit

    fits = {}
    for criterion in criteria:
        data = work / f"data_{criterion}"
        if not data.exists():
            _log(f"collect {run_dir} {criterion}")
            collect(run_dir, data, criterion, windows)
        for predictor in PREDICTORS:
            out = work / f"{criterion}_{predictor}"
            if not (out / META_NAME).exists():
                _log(f"fit {run_dir} {criterion} {predictor}")
                fit(run_dir, data, predictor, out, None, epochs)
            fits[(criterion, predictor)] = out
    return fits


def metas(fits: dict) -> dict:
    """Each fitted predictor's saved meta (Spearman rho, FLOPs, windows), keyed criterion+predictor."""
    from smoe.sparsity.fit import load_predictor

    return {f"{c}+{p}": {k: v for k, v in load_predictor(d)[1].items() if k != "run_dir"} for (c, p), d in fits.items()}


def loss_grid(ctx, fits: dict, criteria, sparsities) -> list[dict]:
    from smoe.accounting import sparse_flops_per_token
    from smoe.data import bits_per_byte
    from smoe.sparsity.evaluate import make_selector, val_ce
    from smoe.sparsity.fit import load_predictor

    rows = [{"arm": "dense", "criterion": None, "predictor": None, "mode": "dense", "sparsity": 0.0,
             "val_bpb": bits_per_byte(val_ce(ctx, None)), "flops_per_token": sparse_flops_per_token(ctx.cfg.model, 0.0, "mask")}]
    arms = [(c, p, "mask") for c in criteria for p in PREDICTORS] + [(c, p, "gather") for c, p in HEADLINE]
    arms += [(c, "oracle", "mask") for c in criteria]
    for sparsity in sparsities:
        for criterion, predictor, mode in arms:
            mlps, meta = load_predictor(fits[criterion, predictor]) if predictor != "oracle" else ({}, {})
            selector = make_selector(ctx, sparsity, mode, predictor, mlps, criterion)
            bpb = bits_per_byte(val_ce(ctx, selector))
            rows.append({"arm": f"{criterion}+{predictor}", "criterion": criterion, "predictor": predictor, "mode": mode,
                         "sparsity": sparsity, "val_bpb": bpb,
                         "flops_per_token": sparse_flops_per_token(ctx.cfg.model, sparsity, mode,
                                                                   meta.get("predictor_flops", 0.0))})
            _log(f"  s={sparsity} {criterion}+{predictor} {mode}: val_bpb {bpb:.4f}")
    return rows


def latency_grid(ctx, fits: dict, sparsities, repeats: int) -> list[dict]:
    from smoe.sparsity.evaluate import latency_programs, make_selector, time_programs
    from smoe.sparsity.fit import load_predictor

    generate = ctx.cfg.model.seq_len - ctx.at - 1  # tokens decoded after the prompt, to the window's end
    rows = []
    for sparsity in sparsities:
        for criterion, predictor in HEADLINE:
            mlps, _ = load_predictor(fits[criterion, predictor])
            programs = latency_programs(ctx, None, "dense/")
            for mode in ("mask", "gather"):
                programs |= latency_programs(ctx, make_selector(ctx, sparsity, mode, predictor, mlps, criterion),
                                             f"{mode}/")
            # Sub-millisecond programs get 5x the samples of the batch-8 prefill: on a shared machine
            # their medians need more turns to settle.
            long = {k: v for k, v in programs.items() if "prefill_b" in k}
            times = time_programs({k: v for k, v in programs.items() if k not in long}, 5 * repeats)
            times |= time_programs(long, repeats)
            row = {"arm": f"{criterion}+{predictor}", "sparsity": sparsity, "generate_tokens": generate,
                   "latency_ms": times}
            for mode in ("dense", "mask", "gather"):
                # batch-1 generation as ShadowLLM times it: the prompt (selection included), then `generate` steps
                row[f"{mode}_generate_ms"] = times[f"{mode}/prompt_b1"]["p50"] + generate * times[f"{mode}/decode_b1"]["p50"]
            predictor_ms = times["gather/predictor"]["p50"]
            row["predictor_share_of_generate"] = predictor_ms / row["gather_generate_ms"]
            row["gather_over_mask_decode_speedup"] = times["mask/decode_b1"]["p50"] / times["gather/decode_b1"]["p50"]
            row["gather_over_mask_prefill_speedup"] = times["mask/prefill_b8"]["p50"] / times["gather/prefill_b8"]["p50"]
            rows.append(row)
            _log(f"  latency s={sparsity} {criterion}+{predictor}: decode p50 dense/mask/gather "
                 f"{times['dense/decode_b1']['p50']:.2f}/{times['mask/decode_b1']['p50']:.2f}/"
                 f"{times['gather/decode_b1']['p50']:.2f} ms, predictor {predictor_ms:.2f} ms")
    return rows


def figure(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results["models"])
    fig, axes = plt.subplots(2, len(models), figsize=(6 * len(models), 8), squeeze=False)
    for col, name in enumerate(models):
        model = results["models"][name]
        dense = model["loss"][0]["val_bpb"]
        ax = axes[0, col]
        arms = sorted({(r["arm"], r["mode"]) for r in model["loss"][1:]})
        for arm, mode in arms:
            rows = [r for r in model["loss"][1:] if (r["arm"], r["mode"]) == (arm, mode)]
            ax.plot([0.0] + [r["sparsity"] for r in rows], [dense] + [r["val_bpb"] for r in rows],
                    "--" if mode == "gather" else ("o:" if "oracle" in arm else "o-"), label=f"{arm} ({mode})")
        ax.set(title=f"{name}: val bpb vs sparsity", xlabel="sparsity (share of heads and neurons pruned)",
               ylabel="val bits per byte")
        ax.legend(fontsize=7)
        ax = axes[1, col]
        # Ratios to the dense program timed in the same round robin: machine drift between rounds cancels.
        for arm in sorted({r["arm"] for r in model["latency"]}):
            rows = [r for r in model["latency"] if r["arm"] == arm]
            for mode, style in (("mask", "-"), ("gather", "--")):
                ax.plot([r["sparsity"] for r in rows], [r["latency_ms"][f"{mode}/decode_b1"]["p50"]
                                                        / r["latency_ms"]["dense/decode_b1"]["p50"] for r in rows],
                        style, marker="o", label=f"{arm} {mode}")
        gathered = [r for r in model["loss"][1:] if r["mode"] == "gather" and r["arm"] == "plainact+shadow"]
        ax.plot([r["sparsity"] for r in gathered], [r["flops_per_token"]["total"] / r["flops_per_token"]["dense"]
                                                    for r in gathered], "k:", label="analytic FLOPs gathered / dense")
        ax.set(title=f"{name}: batch-1 decode step p50 / dense p50 (same round)", xlabel="sparsity",
               ylabel="time ratio")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def report(results: dict) -> str:
    """Markdown tables of a results.json: loss per arm, predictors, latency and FLOPs."""
    out = []
    for name, model in results["models"].items():
        dense = model["loss"][0]
        sparsities = sorted({r["sparsity"] for r in model["loss"][1:]})
        out += [f"**{name}** (dense val bpb {dense['val_bpb']:.3f}; cells: val bpb, +% over dense)", "",
                "| arm | mode | " + " | ".join(f"s={s:g}" for s in sparsities) + " |",
                "|---|---|" + "---|" * len(sparsities)]
        for arm, mode in dict.fromkeys((r["arm"], r["mode"]) for r in model["loss"][1:]):
            cells = [r["val_bpb"] for s in sparsities for r in model["loss"][1:]
                     if (r["arm"], r["mode"], r["sparsity"]) == (arm, mode, s)]
            out.append(f"| {arm} | {mode} | " + " | ".join(
                f"{v:.3f} (+{100 * (v / dense['val_bpb'] - 1):.1f}%)" for v in cells) + " |")
        gaps = [abs(a["val_bpb"] - b["val_bpb"]) for a in model["loss"] for b in model["loss"]
                if a["mode"] == "mask" and b["mode"] == "gather" and (a["arm"], a["sparsity"]) == (b["arm"], b["sparsity"])]
        out += ["", f"max |gather - mask| val bpb: {max(gaps):.2e}", "",
                "| predictor | Spearman rho heads | rho neurons | FLOPs per input | FLOPs per token |", "|---|---|---|---|---|"]
        seq = model["config"]["seq_len"]
        for arm, meta in model["predictors"].items():
            out.append(f"| {arm} | {meta['spearman_heads']:.3f} | {meta['spearman_neurons']:.3f} | "
                       f"{meta['predictor_flops']:,} | {meta['predictor_flops'] / seq:,.0f} |")
        out += ["", "| s | arm | decode b1 p50 (p99) ms: dense / mask / gather | gather/mask | 1/(1-s) | "
                "prefill b8 p50 ms: dense / mask / gather | predictor ms (share of prompt+generate) | "
                "FLOPs/token dense / gathered (pruned matmuls) |", "|---|---|---|---|---|---|---|---|"]
        for row in model["latency"]:
            t = row["latency_ms"]
            flops = next(r["flops_per_token"] for r in model["loss"]
                         if (r["arm"], r["mode"], r["sparsity"]) == (row["arm"], "gather", row["sparsity"]))
            decode = " / ".join(f"{t[f'{m}/decode_b1']['p50']:.2f} ({t[f'{m}/decode_b1']['p99']:.1f})"
                                for m in ("dense", "mask", "gather"))
            prefill = " / ".join(f"{t[f'{m}/prefill_b8']['p50']:.1f}" for m in ("dense", "mask", "gather"))
            out.append(f"| {row['sparsity']:g} | {row['arm']} | {decode} | {row['gather_over_mask_decode_speedup']:.2f} | "
                       f"{1 / (1 - row['sparsity']):.2f} | {prefill} | {t['gather/predictor']['p50']:.2f} "
                       f"({100 * row['predictor_share_of_generate']:.1f}%) | {flops['dense'] / 1e6:.2f} M / "
                       f"{flops['total'] / 1e6:.2f} M ({flops['pruned_matmuls'] / flops['dense_pruned_matmuls']:.2f}) |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], metavar="NAME=RUN_DIR")
    parser.add_argument("--report", type=Path, metavar="RESULTS_JSON", help="print its markdown tables and exit")
    parser.add_argument("--work", type=Path, default=Path("runs/sparsity_study"))
    parser.add_argument("--out", type=Path, default=Path("experiments/results/sparsity"))
    parser.add_argument("--criteria", nargs="+", default=["plainact", "l2norm"])
    parser.add_argument("--rho-criteria", nargs="*", default=[],
                        help="criteria whose predictors are fitted for Spearman rho only (no loss grid)")
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.3, 0.5, 0.6, 0.7])
    parser.add_argument("--latency-sparsities", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    parser.add_argument("--windows", type=int, default=512, help="train windows collected per criterion")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batches", type=int, default=4, help="val batches of 8 windows scored")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return 0
    if not args.run:
        parser.error("--run NAME=RUN_DIR: give at least one trained run (or --report RESULTS_JSON)")
    runs = dict(spec.split("=", 1) for spec in args.run)

    from smoe.sparsity.evaluate import load_context

    began = time.time()
    results = {"command": " ".join(["python", *sys.argv]), "models": {}}
    for name, run_dir in runs.items():
        run_dir, done = Path(run_dir), args.work / name / "model.json"
        if done.exists():  # a rerun after a kill keeps the models already measured
            model = json.loads(done.read_text())
        else:
            model_began = time.time()
            fits = prepare(run_dir, args.work / name, args.criteria, args.windows, args.epochs)
            ctx = load_context(run_dir, args.batches)
            _log(f"{name}: loss grid")
            model = {"command": results["command"], "run_dir": str(run_dir),
                     "config": dataclasses.asdict(ctx.cfg.model), "predictors": metas(fits),
                     "loss": loss_grid(ctx, fits, args.criteria, args.sparsities)}
            _log(f"{name}: latency grid")
            model["latency"] = latency_grid(ctx, fits, args.latency_sparsities, args.repeats)
            model["wall_s"] = time.time() - model_began
        if args.rho_criteria:
            model["predictors"] |= metas(prepare(run_dir, args.work / name, args.rho_criteria, args.windows,
                                                 args.epochs))
            model.setdefault("rho_only_commands", []).append(results["command"])
        results["models"][name] = model
        atomic.write_text(done, json.dumps(model) + "\n")
    results["wall_s"] = time.time() - began
    args.out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(args.out / "results.json", json.dumps(results, indent=1) + "\n")
    figure(results, args.out / "sparsity.png")
    _log(f"wrote {args.out / 'results.json'} and {args.out / 'sparsity.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
