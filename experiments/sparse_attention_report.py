"""Results of experiments/sparse_attention.sh: one JSON, a markdown table and two figures.

    python experiments/sparse_attention_report.py [--runs runs/sparse_attention]
        [--out experiments/results/sparse_attention] [--recall-topk 32 64 128 256]

Per arm: the last eval row of its metrics.jsonl (val cross-entropy, bits per byte, indexer recall
and KL per layer) and its val loss relative to the dense control. Recall vs k/L after the warm-up:
the warm-up run's weights evaluated (the same val batches as training's eval) with the learned
indexer, and with the window+sinks and random-k selections, at each k of --recall-topk.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from smoe import atomic

REPO = Path(__file__).resolve().parents[1]
CONFIG = "experiments/configs/sparse_attention.yaml"  # relative to REPO
SELECTORS = ("indexer", "window", "random")
# arms without a selection of their own: what each started from
UNSELECTED_ARMS = {"dense": "scratch", "warmup": "dense", "control": "dense"}


def last_eval(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    row = [r for r in rows if r["split"] == "eval"][-1]
    layers = sorted({int(m.group(1)) for name in row if (m := re.match(r"layer(\d+)/indexer_recall", name))})
    out = {"step": row["step"], "val_ce": row["ce"], "val_bpb": row["bits_per_byte"]}
    if layers:
        out["recall"] = sum(row[f"layer{i}/indexer_recall"] for i in layers) / len(layers)
        out["kl"] = sum(row[f"layer{i}/indexer_kl"] for i in layers) / len(layers)
    return out


def recall_after_warmup(warm: Path, topks: list[int]) -> dict:
    from smoe import sharding, steps
    from smoe.config import load_config
    from smoe.data import load_corpus
    from smoe.train import evaluate
    from smoe.training_stages import load_init

    found = {}
    for select in SELECTORS:
        for k in topks:
            cfg = load_config(REPO / CONFIG, ["model.attention=indexer", "train.stage=sparse",
                                              f"model.attention_topk={k}", f"model.attention_select={select}"])
            programs = steps.build(cfg, sharding.make_mesh(cfg.mesh))
            programs.params = load_init(warm, programs.params)
            metrics = evaluate(programs, load_corpus(cfg.data.corpus, cfg.data.val_fraction).val, cfg)
            found[f"{select}_k{k}"] = {"select": select, "topk": k, "k_over_l": k / cfg.model.seq_len,
                                       **last_eval_like(metrics)}
            print(f"recall after warm-up, {select} k={k}: {found[f'{select}_k{k}']['recall']:.3f}", flush=True)
    return found


def last_eval_like(metrics: dict) -> dict:
    recall = [v for name, v in metrics.items() if name.endswith("/indexer_recall")]
    return {"recall": sum(recall) / len(recall), "val_ce": metrics["ce"]}


def _save(fig, ax, path: Path) -> None:
    """k/L ticks as fractions on the log axis, legend, and the PNG."""
    import matplotlib.pyplot as plt

    ax.set_xticks([1 / 16, 1 / 8, 1 / 4, 1 / 2], labels=["1/16", "1/8", "1/4", "1/2"])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figures(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seq = result["seq_len"]
    arms, control = result["arms"], result["arms"]["control"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for select, marker in zip(SELECTORS, "osD"):
        points = sorted((a["topk"] / seq, a["val_ce"]) for a in arms.values()
                        if a.get("select") == select and a.get("from") != "scratch")
        if points:
            ax.plot(*zip(*points), marker=marker, label=f"{select} (continued)")
    native = [a for a in arms.values() if a.get("from") == "scratch" and "topk" in a]
    for a in native:
        ax.plot(a["topk"] / seq, a["val_ce"], "k^", label=f"indexer, native sparse ({a['step']} steps)")
    ax.axhline(control["val_ce"], color="gray", ls="--", label="dense control")
    ax.set(xscale="log", xlabel="k / L", ylabel="val cross-entropy (nats/byte)",
           title=f"Sparse attention, L = {seq}: val loss vs k/L")
    _save(fig, ax, out / "loss_vs_k.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for select, marker in zip(SELECTORS, "osD"):
        points = sorted((r["k_over_l"], r["recall"]) for r in result["recall_after_warmup"].values()
                        if r["select"] == select)
        ax.plot(*zip(*points), marker=marker, label=f"{select}, after warm-up")
    trained = sorted((a["topk"] / seq, a["recall"]) for a in arms.values()
                     if a.get("select") == "indexer" and a.get("from") == "warmup")
    if trained:
        ax.plot(*zip(*trained), "o", mfc="none", ms=10, label="indexer, after sparse training")
    ax.axhline(0.8, color="gray", ls=":", label="target 0.8 at k/L = 1/8")
    ax.set(xscale="log", xlabel="k / L", ylabel="recall of the oracle top-k", ylim=(0, 1.02),
           title=f"Indexer recall vs k/L, L = {seq}")
    _save(fig, ax, out / "recall_vs_k.png")


def table(result: dict) -> str:
    control = result["arms"]["control"]["val_ce"]
    lines = ["| arm | from | select | k | k/L | steps | val CE | val bpb | vs control | recall | KL |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, a in result["arms"].items():
        k = a.get("topk")
        fraction = "" if k is None else f"1/{result['seq_len'] // k}"
        recall = "" if "recall" not in a else f"{a['recall']:.3f}"
        kl = "" if "kl" not in a else f"{a['kl']:.4f}"
        lines.append(f"| {name} | {a.get('from', '')} | {a.get('select', '')} | {k or ''} | {fraction} | {a['step']} | "
                     f"{a['val_ce']:.4f} | {a['val_bpb']:.4f} | {100 * (a['val_ce'] / control - 1):+.2f}% | "
                     f"{recall} | {kl} |")
    return "\n".join(lines)



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/sparse_attention")
    parser.add_argument("--out", default="experiments/results/sparse_attention")
    parser.add_argument("--recall-topk", type=int, nargs="+", default=[32, 64, 128, 256])
    args = parser.parse_args()
    runs, out = Path(args.runs), Path(args.out)
    if not (runs / "warmup" / "metrics.jsonl").is_file():
        parser.error(f"--runs {runs}: no warm-up run there (warmup/metrics.jsonl); "
                     "run experiments/sparse_attention.sh first, or pass the folder it wrote")
    out.mkdir(parents=True, exist_ok=True)
    from smoe.config import load_config

    seq = load_config(REPO / CONFIG).model.seq_len
    arms = {}
    for run in sorted(p for p in runs.iterdir() if (p / "metrics.jsonl").is_file()):
        if run.name in UNSELECTED_ARMS:
            arms[run.name] = {"from": UNSELECTED_ARMS[run.name]} | last_eval(run)
            continue
        select, k = run.name.rsplit("_k", 1)
        origin = {"indexer": "warmup", "native": "scratch"}.get(select, "dense")
        arms[run.name] = {"from": origin, "select": "indexer" if select == "native" else select,
                          "topk": int(k)} | last_eval(run)
    result = {"seq_len": seq, "config": CONFIG, "arms": arms,
              "recall_after_warmup": recall_after_warmup(runs / "warmup", args.recall_topk)}
    atomic.write_text(out / "results.json", json.dumps(result, indent=1))
    figures(result, out)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
