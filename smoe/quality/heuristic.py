"""The one budget -> run config heuristic every quality-sweep point goes through.

Convention (written down in smoe/quality/README.md): a budget C is training FLOPs from the analytic
matmul count, so tokens D = C / F where F = 3 x forward FLOPs per token (`train_flops_per_token`),
and steps = round(D / (batch x seq_len)). Nothing is tuned per run: width alone sets the head count,
batch and learning rate, and the budget alone sets the step count, so every family at a budget gets
the same treatment and a difference in loss cannot come from a hand-picked setting. The one knob is
`lr_scale`, a multiplier on the width's learning rate, which a point takes per family from a small
learning-rate sweep at the smallest budget (`lr_from`: that sweep's directory; recorded in both reports).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from smoe.accounting import train_flops_per_token
from smoe.config import ALIASES, DataConfig, MeshConfig, ModelConfig, RunConfig, TrainConfig, config_from_dict, config_key
from smoe.errors import UserError

HEAD_DIM = 16
# Rounding steps to an integer misses the budget by at most 0.5 / steps, so 50 steps bounds it by 1%.
MIN_STEPS = 50
EVALS_PER_RUN = 6  # intermediate evals give the loss curve that time-to-loss is read from
LOGS_PER_RUN = 20  # train rows carry tokens/s; the median over them is the run's throughput
PRE_LAYERS = 1
_MODEL_DEFAULTS = {f.name: f.default for f in fields(ModelConfig)}
# Quality-sweep families; hourglass is the dense model with the sectional shortening (sectional with
# E = 1 and no mixing: pre blocks, pool r, full-width blocks at L/r, upsample), the control that
# separates sectioning from shortening.
FAMILIES = ("dense", "hourglass", "topk", "sectional")
SHORTENED = ("hourglass", "sectional")


@dataclass(frozen=True)
class QualityPoint:
    """One sweep point: which model, how wide, and how much compute. Field names are the YAML keys."""

    family: str
    d_model: int
    budget: float
    n_layers: int = 4
    seq_len: int = 64
    n_experts: int = 1
    top_k: int = 1
    shorten: int = 1
    # family sectional: candidate FFNs per slice, routed like family topk (issue 11); 1 = plain sectional
    slice_experts: int = _MODEL_DEFAULTS["slice_experts"]
    # adaptive routing of family topk (and sectional with slice_experts > 1), defaulting to plain top-k
    routing: str = _MODEL_DEFAULTS["routing"]
    top_p: float = _MODEL_DEFAULTS["top_p"]
    k_target: float = _MODEL_DEFAULTS["k_target"]
    k_cap: int = _MODEL_DEFAULTS["k_cap"]
    balance: str = _MODEL_DEFAULTS["balance"]
    dynamic_loss_coef: float = _MODEL_DEFAULTS["dynamic_loss_coef"]
    fallback_fraction: float = _MODEL_DEFAULTS["fallback_fraction"]
    renormalize_gates: bool = _MODEL_DEFAULTS["renormalize_gates"]
    seed: int = 0
    corpus: str = "shakespeare"
    eval_batches: int = 4
    lr_scale: float = 1.0
    # a learning-rate sweep's results directory: lr_scale becomes this family's choice there, at its
    # smallest budget (resolved before the first point trains; see smoe/quality/verdicts.py)
    lr_from: str = ""

    def __post_init__(self) -> None:
        # Model keys are validated by ModelConfig itself; only what a budget point adds is checked here.
        for name in ("eval_batches", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (name == "eval_batches"):
                raise UserError(f"{name}: must be an integer >= {int(name == 'eval_batches')}, got {value!r}")
        if not (isinstance(self.budget, float) and math.isfinite(self.budget) and self.budget > 0):
            raise UserError(f"budget: must be a positive number of training FLOPs, got {self.budget!r}")
        if not (isinstance(self.lr_scale, (int, float)) and not isinstance(self.lr_scale, bool)
                and math.isfinite(self.lr_scale) and self.lr_scale > 0):
            raise UserError(f"lr_scale: must be a positive multiplier of the width's learning rate, got {self.lr_scale!r}")
        if not isinstance(self.lr_from, str):
            raise UserError(f"lr_from: must be the results directory of a learning-rate sweep, got {self.lr_from!r}")
        if self.family not in FAMILIES:
            raise UserError(f"family: must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        if self.family in ("dense", "hourglass") and self.n_experts != 1:
            raise UserError(f"n_experts: a {self.family} model has no experts; drop it or set 1, got {self.n_experts}")
        if not self._routed and self.top_k != 1:
            raise UserError(f"top_k: only family topk (or sectional with slice_experts > 1) routes tokens; "
                            f"drop it for {self.family}")
        if self.family not in SHORTENED and self.shorten != 1:
            raise UserError(f"shorten: only families {' and '.join(SHORTENED)} shorten the sequence; "
                            f"drop it for {self.family}")
        if self.family == "hourglass" and self.shorten == 1:
            raise UserError("shorten: hourglass without shortening is family dense; set shorten >= 2 or use dense")
        model_config(self)
        if self.d_model % HEAD_DIM and self.d_model > HEAD_DIM:
            raise UserError(f"d_model: must be a multiple of the head size {HEAD_DIM} (or at most it), "
                            f"got {self.d_model}")

    @property
    def label(self) -> str:
        """The model family as plotted: one curve per label."""
        if self.family == "topk":
            return f"topk E{self.n_experts} {self._routing_label}"
        if self.family == "sectional":
            sectional = f"sectional E{self.n_experts} r{self.shorten}"
            return f"{sectional} M{self.slice_experts} {self._routing_label}" if self._routed else sectional
        if self.family == "hourglass":
            return f"hourglass r{self.shorten}"
        return "dense"

    @property
    def _routed(self) -> bool:
        return self.family == "topk" or (self.family == "sectional" and self.slice_experts != 1)

    @property
    def _routing_label(self) -> str:
        """What sets a top-k point's compute and balance; keys at their defaults are left out."""
        parts = {"top_k": [f"k{self.top_k}"], "top_p": [f"p{self.top_p:g}"],
                 "controlled": [f"ktarget{self.k_target:g}"]}[self.routing]
        if self.balance != "switch":
            parts.append(f"balance {self.balance}")
        if self.k_cap:
            parts.append(f"kcap{self.k_cap}")
        if self.fallback_fraction:
            parts.append(f"fallback{self.fallback_fraction:g}")
        if self.dynamic_loss_coef:
            parts.append(f"dyn{self.dynamic_loss_coef:g}")
        if self.renormalize_gates:
            parts.append("renorm")
        return " ".join(parts)


_ADAPTIVE_FIELDS = ("slice_experts", "routing", "top_p", "k_target", "k_cap", "balance", "dynamic_loss_coef",
                    "fallback_fraction", "renormalize_gates")
_FIELDS = {f.name for f in fields(QualityPoint)}


def point_from_dict(point: dict) -> QualityPoint:
    """A sweep point's fields, with an optional `arch` mapping merged in (so a grid can list whole
    architectures as one axis) and the sweep's `repeat` index added to the seed."""
    merged = {key: value for key, value in point.items() if key not in ("arch", "repeat")}
    arch = point.get("arch", {})
    if not isinstance(arch, dict):
        raise UserError(f"arch: must be a mapping such as {{family: topk, n_experts: 4, top_k: 2}}, got {arch!r}")
    merged |= arch
    merged = {_field_name(key): value for key, value in merged.items()}
    if "repeat" in point:
        merged["seed"] = merged.get("seed", 0) + point["repeat"]
    unknown = sorted(set(merged) - _FIELDS)
    if unknown:
        raise UserError(f"{unknown[0]}: unknown point field; valid fields are {sorted(_FIELDS)} plus arch, repeat "
                        "(run-config keys such as model.n_experts or E name the same fields)")
    if merged.get("lr_from") and "lr_scale" in merged:
        raise UserError("lr_scale: a point with lr_from takes its lr_scale from there; drop one of the two")
    for required in ("family", "d_model", "budget"):
        if required not in merged:
            raise UserError(f"{required}: every train point needs it; add it to base, grid or arch")
    try:
        merged["budget"] = float(merged["budget"])
    except (TypeError, ValueError):
        raise UserError(f"budget: must be a number of FLOPs such as 1.0e+12, got {merged['budget']!r}") from None
    return QualityPoint(**merged)


def _field_name(key: str) -> str:
    """Run-config keys in any form the vocabulary allows (`model.n_experts`, `E`, `model.kind`) name
    the point field of the same meaning; anything else is left for the unknown-field check."""
    dotted = config_key(key) if key not in _FIELDS else None
    if dotted is None:
        return key
    name = "family" if dotted == ALIASES["family"] else dotted.split(".")[1]
    return name if name in _FIELDS else key


def learning_rate(d_model: int) -> float:
    """Adam's stable step shrinks with width (muP-like 1/sqrt(d)); 1e-2 at d=32, clipped to [1e-3, 1e-2]."""
    return min(1e-2, max(1e-3, 1e-2 * math.sqrt(32 / d_model)))


def batch_size(d_model: int) -> int:
    """16 sequences up to d=64, then d/4: wider models sit at larger budgets, where a larger batch
    costs no extra steps, while the smallest budgets need enough steps for the 1% budget match."""
    return 16 * max(1, d_model // 64)


def heads_for(width: int) -> int:
    """Heads of HEAD_DIM, the same per-head width for dense blocks and sectional experts; a width
    that is not a multiple takes the most heads that divide it and are at least HEAD_DIM wide."""
    return next(h for h in range(max(1, width // HEAD_DIM), 0, -1) if width % h == 0)


def model_config(point: QualityPoint) -> ModelConfig:
    """The point's model; ModelConfig's own checks reject bad values, named as the point names them.

    Sectional experts get heads of the dense head width (not one head per slice), and mixing across
    slices only where there are slices to mix (E > 1): so sectional E = 1, r = 1 is the dense model,
    weight for weight and step for step, and E = 1, r > 1 is the hourglass control.
    """
    d_model = point.d_model if isinstance(point.d_model, int) and point.d_model > 0 else 1
    experts = point.n_experts if isinstance(point.n_experts, int) and point.n_experts > 0 else 1
    sectional = point.family in SHORTENED
    values = {"kind": "sectional" if sectional else point.family, "d_model": point.d_model,
              "n_layers": point.n_layers, "seq_len": point.seq_len, "n_experts": point.n_experts,
              "top_k": point.top_k, "shorten": point.shorten, "n_heads": heads_for(d_model),
              "pre_layers": PRE_LAYERS, "expert_heads": heads_for(max(1, d_model // experts)),
              "recombine": "mix" if point.family == "sectional" and experts > 1 else "none"}
    values |= {name: getattr(point, name) for name in _ADAPTIVE_FIELDS}
    try:
        return config_from_dict({"model": values}).model
    except UserError as err:
        key, message = str(err).split(":", 1)
        raise UserError(f"{'family' if key == ALIASES['family'] else key.removeprefix('model.')}:{message}") from None


def config_for_budget(point: QualityPoint) -> RunConfig:
    """Steps from the budget, batch and learning rate from the width, 10% warmup, one device."""
    model = model_config(point)
    batch = batch_size(point.d_model)
    tokens_per_step = batch * point.seq_len
    steps = round(point.budget / (train_flops_per_token(model) * tokens_per_step))
    if steps < MIN_STEPS:
        needed = MIN_STEPS * train_flops_per_token(model) * tokens_per_step
        raise UserError(f"budget: {point.budget:.3g} FLOPs gives {point.label} d={point.d_model} only {steps} steps; "
                        f"raise it to at least {needed:.3g} or use a smaller model")
    train = TrainConfig(steps=steps, batch_size=batch, learning_rate=learning_rate(point.d_model) * point.lr_scale,
                        warmup_steps=steps // 10, seed=point.seed, eval_every=max(1, steps // EVALS_PER_RUN),
                        eval_batches=point.eval_batches, checkpoint_every=steps, keep_checkpoints=1,
                        log_every=max(1, steps // LOGS_PER_RUN))
    return RunConfig(model=model, mesh=MeshConfig(data=1, expert=1), data=DataConfig(corpus=point.corpus), train=train)


def train_flops(cfg: RunConfig) -> float:
    """What a run of `cfg` actually spends: steps x tokens per step x FLOPs per token."""
    return cfg.train.steps * cfg.train.batch_size * cfg.model.seq_len * train_flops_per_token(cfg.model)
