"""Verdicts per comparison with intervals across seeds, and the per-family learning-rate choice.

Comparisons at one budget, each between two families' best settings (best d and lr_scale there):
* sectioning effect at r: sectional E (E > 1) minus its control at the same shortening, the hourglass
  dense model at r > 1 or the dense model at r = 1, so shortening is held fixed;
* shortening effect at r: hourglass r minus dense (the same model, only shortened);
* shortening effect on sectional E at r: sectional E r minus sectional E r = 1;
* token routing: top-k minus dense.
The effect is the difference of seed-mean validation bits per byte; its interval is Welch's 95%
t-interval over the two sets of seeds (unpaired, so conservative where seeds share data order).
An interval that covers 0 is "not distinguishable".
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from smoe.quality import report
from smoe.quality.report import Setting, best_per_label

LEVEL = 0.95


def welch_interval(a, b, level: float = LEVEL) -> tuple[float, float] | None:
    """Interval for mean(a) - mean(b); None with fewer than two values on a side."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or b.size < 2:
        return None
    var_a, var_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff, se = a.mean() - b.mean(), math.sqrt(var_a + var_b)
    if se == 0:
        return float(diff), float(diff)
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (a.size - 1) + var_b ** 2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return float(diff - half), float(diff + half)


@dataclass(frozen=True)
class Effect:
    name: str
    budget: float
    setting: Setting
    baseline: Setting

    @property
    def bpb(self) -> float:
        return self.setting.mean("val_bpb") - self.baseline.mean("val_bpb")

    @property
    def interval(self) -> tuple[float, float] | None:
        return welch_interval([r["val_bpb"] for r in self.setting.runs], [r["val_bpb"] for r in self.baseline.runs])

    @property
    def verdict(self) -> str:
        if self.interval is None:
            return "no interval (needs 2 or more seeds on each side)"
        lo, hi = self.interval
        if lo <= 0 <= hi:
            return "not distinguishable"
        return f"{self.setting.label if self.bpb < 0 else self.baseline.label} better"

    def line(self) -> str:
        ci = "" if self.interval is None else " [{:+.4f}, {:+.4f}]".format(*self.interval)
        return (f"{self.name}: {self.bpb:+.4f} bpb{ci} ({self.setting.label} d={self.setting.d_model} vs "
                f"{self.baseline.label} d={self.baseline.d_model}, {self.budget:.2g} FLOPs): {self.verdict}")

    def as_json(self) -> dict:
        return {"name": self.name, "budget": self.budget, "family": self.setting.label,
                "baseline": self.baseline.label, "bpb": self.bpb, "ci95": self.interval, "verdict": self.verdict}


def _baseline(s: Setting) -> tuple[str, str] | None:
    """(comparison name, baseline label) for a family's setting, or None if it is a baseline only."""
    if s.family == "sectional" and s.n_experts > 1:
        return (f"sectioning effect at r={s.shorten}", "dense" if s.shorten == 1 else f"hourglass r{s.shorten}")
    if s.family == "hourglass":
        return f"shortening effect at r={s.shorten}", "dense"
    if s.family == "topk":
        return "token routing effect", "dense"
    return None


def effects(all_settings: list[Setting], budget: float) -> list[Effect]:
    """Every comparison whose two families were trained at `budget`: sectioning first, then shortening."""
    labels = sorted({s.label for s in all_settings if s.budget == budget})
    best = best_per_label(all_settings, budget, labels)
    found = []
    for s in best.values():
        pairs = [_baseline(s)]
        if s.family == "sectional" and s.shorten > 1:
            pairs.append((f"shortening effect on sectional E{s.n_experts} at r={s.shorten}",
                          f"sectional E{s.n_experts} r1"))
        found += [Effect(name, budget, s, best[base]) for name, base in filter(None, pairs) if base in best]
    order = ("sectioning", "shortening", "token")
    return sorted(found, key=lambda e: (order.index(e.name.split()[0]), e.name, e.setting.label))


def lr_choices(all_settings: list[Setting]) -> list[dict]:
    """Each (budget, family, d) trained at two or more lr_scales: the mean loss per scale and the choice
    (lowest mean val bpb); `at_edge` flags a choice at the end of the range tried."""
    groups: dict[tuple, list[Setting]] = defaultdict(list)
    for s in all_settings:
        groups[(s.budget, s.label, s.d_model)].append(s)
    choices = []
    for (budget, label, d_model), group in sorted(groups.items()):
        if len(group) < 2:
            continue
        group = sorted(group, key=lambda s: s.lr_scale)
        best = min(group, key=lambda s: s.mean("val_bpb"))
        choices.append({"budget": budget, "label": label, "d_model": d_model, "lr_scale": best.lr_scale,
                        "learning_rate": best.runs[0]["learning_rate"],
                        "at_edge": best is group[0] or best is group[-1],
                        "tried": {s.lr_scale: s.mean("val_bpb") for s in group}})
    return choices


def lr_scale_from(directory: str, label: str, d_model: int) -> float:
    """`label`'s chosen lr_scale in the learning-rate sweep stored in `directory`, at its smallest
    budget: the choice at width `d_model` where that width was swept (the best scale moves with
    width: sectional E8 r1 chose 2 at d = 32 and 1 at d = 64 in iso_flop_controls_lr, 2 costing
    0.12 bpb at d = 64), else at the width whose best scale reached the lowest loss."""
    from smoe.errors import UserError
    from smoe.sweep.store import ResultStore

    with ResultStore(directory, create=False) as store:
        rows = store.rows()
    every_lr = report.settings(rows) if rows and "label" in rows[0] else []
    mine = [s for s in every_lr if s.label == label]
    choices = [c for c in lr_choices(mine) if c["budget"] == min((s.budget for s in mine), default=None)]
    if not choices:
        raise UserError(f"lr_from: {directory} holds no {label} trained at two or more lr_scales; run its "
                        f"learning-rate sweep first (e.g. experiments/configs/iso_flop_controls_lr.yaml) or drop lr_from")
    same_width = [c for c in choices if c["d_model"] == d_model]
    best = min(same_width or choices, key=lambda c: min(c["tried"].values()))
    return best["lr_scale"]


def lr_table(choices: list[dict], all_settings: list[Setting]) -> str:
    """The choices made in this sweep, and the scales its points took from another sweep (lr_from)."""
    taken = sorted({(s.label, s.runs[0]["lr_from"], s.lr_scale) for s in all_settings if s.runs[0].get("lr_from")})
    lines = [f"* {label}: lr_scale {scale:g}, chosen in `{source}`" for label, source, scale in taken]
    if not choices:
        return "\n".join(lines or ["No setting of this sweep was trained at more than one lr_scale."])
    lines += [""] if lines else []
    lines += ["| budget | family | d | val bpb per lr_scale (seed mean) | chosen lr_scale | learning rate |",
              "|---|---|---|---|---|---|"]
    for c in choices:
        tried = ", ".join(f"{scale:g}: {bpb:.4f}" for scale, bpb in c["tried"].items())
        edge = " (at the edge of the range: extend it)" if c["at_edge"] else ""
        lines.append(f"| {c['budget']:.2g} | {c['label']} | {c['d_model']} | {tried} | **{c['lr_scale']:g}**{edge} | "
                     f"{c['learning_rate']:.3g} |")
    return "\n".join(lines)
