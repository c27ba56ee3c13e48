"""From stored sweep rows to per-budget comparisons (seed means, best size per family, time-to-loss)
and the markdown that reports them.

Definitions (also in smoe/quality/README.md):
* a *setting* is one (budget, label, d_model, lr_scale); its seeds are averaged;
* a family's result at a budget is its best setting (over d and lr_scale) by mean final validation loss;
* the *iso-FLOP families* are the labels trained at every budget; only they are compared for a win,
  so a variant run at one budget only (the loss-vs-E points) cannot win by selection;
* time-to-loss at a budget: the target is the worst iso-FLOP family's best final loss there (so every
  family reaches it); a setting's time is the first step where its seed-mean eval curve reaches the
  target (linear between evals) times its measured seconds per step, and a family's is its fastest setting.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Setting:
    budget: float
    label: str
    family: str
    d_model: int
    n_experts: int
    shorten: int
    runs: tuple[dict, ...]
    lr_scale: float = 1.0

    def mean(self, field: str) -> float:
        return float(np.mean([run[field] for run in self.runs]))

    def std(self, field: str) -> float:
        """Sample standard deviation over seeds; NaN with one seed (no error bar, not a zero one)."""
        values = [run[field] for run in self.runs]
        return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan

    def mean_curve(self) -> tuple[np.ndarray, np.ndarray]:
        steps = np.array([step for step, _ in self.runs[0]["eval_curve"]], dtype=float)
        losses = np.mean([[ce for _, ce in run["eval_curve"]] for run in self.runs], axis=0)
        return steps, losses

    def seconds_to(self, target_ce: float) -> float | None:
        steps, losses = self.mean_curve()
        below = np.flatnonzero(losses <= target_ce)
        if below.size == 0:
            return None
        i = int(below[0])
        step = steps[i]
        if i > 0:
            # Losses fall between evals; interpolate the crossing rather than rounding up to the next eval.
            step = np.interp(target_ce, [losses[i], losses[i - 1]], [steps[i], steps[i - 1]])
        return float(step) * self.mean("seconds_per_step")


def settings(rows: list[dict]) -> list[Setting]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        # rows from before lr_scale existed ran at the width's learning rate
        groups[(row["budget"], row["label"], row["d_model"], row.get("lr_scale", 1.0))].append(row)
    return [Setting(budget, label, runs[0]["family"], d_model, runs[0]["n_experts"], runs[0]["shorten"],
                    tuple(sorted(runs, key=lambda run: run["seed"])), lr_scale)
            for (budget, label, d_model, lr_scale), runs in sorted(groups.items())]


def best_lr(all_settings: list[Setting]) -> list[Setting]:
    """One setting per (budget, label, d_model): its best lr_scale, so tables, laws and figures see
    each model once; the learning-rate choice itself is reported from the full list."""
    best: dict[tuple, Setting] = {}
    for s in all_settings:
        key = (s.budget, s.label, s.d_model)
        if key not in best or s.mean("val_ce") < best[key].mean("val_ce"):
            best[key] = s
    return [best[key] for key in sorted(best)]


def iso_flop_labels(all_settings: list[Setting]) -> list[str]:
    budgets = {s.budget for s in all_settings}
    by_label: dict[str, set[float]] = defaultdict(set)
    for s in all_settings:
        by_label[s.label].add(s.budget)
    return sorted(label for label, seen in by_label.items() if seen == budgets)


def best_per_label(all_settings: list[Setting], budget: float, labels: list[str]) -> dict[str, Setting]:
    best: dict[str, Setting] = {}
    for s in all_settings:
        if s.budget != budget or s.label not in labels:
            continue
        if s.label not in best or s.mean("val_ce") < best[s.label].mean("val_ce"):
            best[s.label] = s
    return best


def compare_budget(all_settings: list[Setting], budget: float) -> dict:
    """Each iso-FLOP family's best setting at `budget`, its time-to-loss, and the winners."""
    labels = iso_flop_labels(all_settings)
    best = best_per_label(all_settings, budget, labels)
    target = max(s.mean("val_ce") for s in best.values())
    families = []
    for label, s in sorted(best.items(), key=lambda item: item[1].mean("val_ce")):
        times = [t for t in (c.seconds_to(target) for c in all_settings if c.budget == budget and c.label == label)
                 if t is not None]
        families.append({"label": label, "setting": s, "time_to_loss_s": min(times)})
    by_time = min(families, key=lambda f: f["time_to_loss_s"])
    return {"budget": budget, "target_ce": target, "families": families,
            "loss_winner": families[0]["label"], "time_winner": by_time["label"]}


def _pm(mean: float, std: float, digits: int = 4) -> str:
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def budget_table(comparison: dict) -> str:
    """Markdown: one row per iso-FLOP family, best first, with its gap to dense."""
    fams = comparison["families"]
    dense = next((f["setting"].mean("val_bpb") for f in fams if f["label"] == "dense"), None)
    lines = [f"Budget {comparison['budget']:.2g} training FLOPs; time-to-loss target: val CE "
             f"{comparison['target_ce']:.4f} nats ({comparison['target_ce'] / math.log(2):.4f} bpb).", "",
             "| family | best d | params total / active | val bpb (mean ± std, seeds) | vs dense | "
             "time-to-loss (s) | tokens/s | train FLOPs/token | steps |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f in fams:
        s = f["setting"]
        bpb = s.mean("val_bpb")
        gap = ("—" if dense is None or f["label"] == "dense"
               else f"{bpb - dense:+.4f} ({100 * (bpb / dense - 1):+.1f}%)")
        lines.append(
            f"| {f['label']} | {s.d_model} | {s.runs[0]['params_total']:,} / {s.runs[0]['params_active']:,} | "
            f"{_pm(bpb, s.std('val_bpb'))} ({len(s.runs)}) | {gap} | {f['time_to_loss_s']:.3g} | "
            f"{s.mean('tokens_per_s'):,.0f} | {s.runs[0]['train_flops_per_token']:.3g} | {s.runs[0]['steps']} |")
    return "\n".join(lines)


def expert_settings(all_settings: list[Setting]) -> list[Setting]:
    """Sectional settings of every (budget, d_model) where at least three expert counts were trained."""
    counts: dict[tuple, set[int]] = defaultdict(set)
    for s in all_settings:
        if s.family == "sectional":
            counts[(s.budget, s.d_model)].add(s.n_experts)
    return [s for s in all_settings if s.family == "sectional" and len(counts[(s.budget, s.d_model)]) >= 3]


def expert_table(all_settings: list[Setting]) -> str:
    if not expert_settings(all_settings):
        return "No (budget, d) slice of this sweep trained three or more expert counts."
    lines = ["| budget | d | shorten r | E | params | val bpb (mean ± std, seeds) | tokens/s |",
             "|---|---|---|---|---|---|---|"]
    for s in sorted(expert_settings(all_settings), key=lambda s: (s.budget, s.d_model, s.shorten, s.n_experts)):
        lines.append(f"| {s.budget:.2g} | {s.d_model} | {s.shorten} | {s.n_experts} | {s.runs[0]['params_total']:,} | "
                     f"{_pm(s.mean('val_bpb'), s.std('val_bpb'))} ({len(s.runs)}) | {s.mean('tokens_per_s'):,.0f} |")
    return "\n".join(lines)


def _verdict(comparison: dict) -> str:
    ranked = comparison["families"]
    fams = {f["label"]: f for f in ranked}
    bpb = {label: f["setting"].mean("val_bpb") for label, f in fams.items()}
    winner = ranked[0]["label"]
    line = f"* lowest validation loss: **{winner}**"
    if len(ranked) > 1:
        runner_up = ranked[1]["label"]
        line += f", {bpb[runner_up] - bpb[winner]:.4f} bpb ahead of {runner_up}"
    fastest = comparison["time_winner"]
    lines = [line, f"* fastest to the target loss: **{fastest}** ({fams[fastest]['time_to_loss_s']:.3g} s of training)"]
    if "dense" in fams:
        for label in (label for label in fams if label.startswith("sectional")):
            gap = bpb[label] - bpb["dense"]
            lines.append(f"* {label} vs dense: {abs(gap):.4f} bpb ({100 * abs(gap) / bpb['dense']:.1f}%) "
                         f"{'worse' if gap > 0 else 'better'}; time-to-loss {fams[label]['time_to_loss_s']:.3g} s "
                         f"vs {fams['dense']['time_to_loss_s']:.3g} s")
    return "\n".join(lines)


def routing_table(all_settings: list[Setting]) -> str:
    """Markdown: the token-routed settings' routing at their last logged train step, seeds averaged."""
    routed = [s for s in all_settings if "mean_k" in s.runs[0]]
    if not routed:
        return "* no token-routed points in this sweep"
    lines = ["At the last logged train step, seeds averaged. k = experts per token (before capacity); "
             "MaxVio = (max load - mean load) / mean load; FLOPs are the expert stage's forward FLOPs per token: "
             "slot = what the static program executes (capacity), useful = realised assignments.", "",
             "| budget | family | d | val bpb | mean k | k per layer (first..last) | MaxVio | MaxVio per layer | "
             "fallback | dropped | slot / useful FLOPs per token |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in sorted(routed, key=lambda s: (s.budget, s.mean("val_bpb"))):
        per_layer = {name: np.mean([run[f"{name}_per_layer"] for run in s.runs], axis=0)
                     for name in ("mean_k", "max_vio")}
        lines.append(
            f"| {s.budget:.2g} | {s.label} | {s.d_model} | {_pm(s.mean('val_bpb'), s.std('val_bpb'))} | "
            f"{s.mean('mean_k'):.3f} | {' '.join(f'{k:.2f}' for k in per_layer['mean_k'])} | "
            f"{s.mean('max_vio'):.3f} | {' '.join(f'{v:.2f}' for v in per_layer['max_vio'])} | "
            f"{s.mean('fallback_fraction'):.3f} | {s.mean('fraction_dropped'):.3f} | "
            f"{s.mean('slot_flops_per_token'):,.0f} / {s.mean('useful_flops_per_token'):,.0f} |")
    return "\n".join(lines)


def _fmt_interval(ci) -> str:
    return "n/a" if ci is None else f"[{ci[0]:.3g}, {ci[1]:.3g}]"


def markdown(all_settings: list[Setting], comparisons: list[dict], clark: dict, budget_law: dict,
             directory: Path, effect_lines: dict[float, list[str]], lr_text: str) -> str:
    """results.md: per-budget tables, verdicts and effects with intervals, the learning-rate choice,
    the loss-vs-E table, and the fitted laws."""
    parts = [f"# Quality at equal compute: `{directory}`", "",
             f"Written by `smoe quality report {directory}`; definitions in smoe/quality/README.md.", ""]
    for comparison in comparisons:
        parts += [f"## Budget {comparison['budget']:.2g} FLOPs", "", budget_table(comparison), "",
                  _verdict(comparison), ""]
        if effect_lines.get(comparison["budget"]):
            parts += ["Effects (seed-mean val bpb difference, 95% Welch interval over seeds; negative: the "
                      "first family is better):", ""]
            parts += [f"* {line}" for line in effect_lines[comparison["budget"]]] + [""]
    parts += ["## Token routing", "", routing_table(all_settings), ""]
    parts += ["## Learning-rate choice", "", "lr_scale multiplies the width's learning rate "
              "(smoe/quality/heuristic.py); each family's best at every budget uses its best scale.", "", lr_text, ""]
    parts += ["## Sectional MoE: loss vs E", "", expert_table(all_settings), "", "## Loss laws", "",
              "Loss vs budget, L = k C^-gamma (val CE in nats, C in training FLOPs; 95% bootstrap over seeds):", "",
              "| family | gamma | 95% interval | k |", "|---|---|---|---|"]
    parts += [f"| {label} | {fit['gamma']:.4f} | {_fmt_interval(fit['gamma_ci95'])} | {fit['k']:.4g} |"
              for label, fit in budget_law.items()] or ["| (needs two or more budgets) | | | |"]
    parts += ["", "Clark et al. 2022, log L = a log N + b log E + c log N log E + d (sectional; N = total "
              "parameters; `smoe fit-law FILE --form clark` reproduces each row):", ""]
    if not clark:
        parts.append("* no sectional loss-vs-E slice in this sweep")
    for name, fit in clark.items():
        if not fit["fitted"]:
            parts.append(f"* `{name}`: not fitted: {fit['reason']}")
            continue
        cis = fit["ci"] or {}
        parts.append(f"* `{name}` ({fit['n_points']} settings): " + ", ".join(
            f"{key} = {value:.4g} {_fmt_interval(cis.get(key))}" for key, value in fit["params"].items()))
    return "\n".join(parts) + "\n"
