"""The S(E) cost model of a sectional layer (arXiv 2503.20750, as reconstructed in theory/README.md).

Costs are multiply-accumulates (MACs), the unit in which the paper's A_trad = 3 L d0^2 is stated.
Every term has the form c * E^k with k in {-2, -1, 0, 1, 2}; `power_coefficients` exposes that
form because the minimiser, the closed forms and the timing fit all work on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from theory.errors import InputError

REGIMES = ("work", "parallel")
ATTENTION_PLACES = ("all", "pre", "experts")  # where sparse attention runs, as model.attention_in


def _positive(name: str, value: float, *, integer: bool = False) -> None:
    if integer and (isinstance(value, bool) or not float(value).is_integer()):
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be positive and finite, got {value!r}; pass a value > 0")


@dataclass(frozen=True)
class CostModel:
    """One sectional layer: a full-width pre-expert block on L tokens, then E experts on L' tokens.

    regime: "work" sums MACs over experts; "parallel" counts one expert's MACs (one device group
    per expert), so every expert term is divided by E once more.
    ffn_mult: FFN hidden width as a multiple of the input width (e.g. 4); None leaves FFN out,
    as the paper's cost model does.
    alpha: the all-pairs exchange overhead alpha * E^2, in MAC-equivalents.
    latency: an optional per-expert launch/latency cost latency * E, in MAC-equivalents.
    attention_topk: learned sparse attention (DeepSeek's lightning indexer): each query scores
    min(k, L) selected keys instead of all L, and an indexer with indexer_heads x indexer_dim scores
    every pair (L^2 H_I d_I per block, per expert in the expert stage: each expert has its own);
    attention_in says which stages (pre, experts or all). None: dense attention.
    """

    d0: int
    seq_len: int
    alpha: float
    seq_reduced: int | None = None
    heads: int = 1
    regime: str = "parallel"
    ffn_mult: float | None = None
    include_pre: bool = True
    latency: float = 0.0
    attention_topk: int | None = None
    indexer_heads: int | None = None
    indexer_dim: int | None = None
    attention_in: str = "all"

    def __post_init__(self) -> None:
        _positive("d0", self.d0, integer=True)
        _positive("seq_len", self.seq_len, integer=True)
        _positive("heads", self.heads, integer=True)
        _positive("alpha", self.alpha)
        if self.seq_reduced is not None:
            _positive("seq_reduced", self.seq_reduced, integer=True)
            if self.seq_reduced > self.seq_len:
                raise InputError(
                    f"seq_reduced (L'={self.seq_reduced}) must not exceed seq_len (L={self.seq_len}); "
                    "the pre-expert layer shortens the sequence"
                )
        if self.regime not in REGIMES:
            raise InputError(f"regime must be one of {REGIMES}, got {self.regime!r}")
        if self.ffn_mult is not None:
            _positive("ffn_mult", self.ffn_mult)
        if not (math.isfinite(self.latency) and self.latency >= 0):
            raise InputError(f"latency must be >= 0 and finite, got {self.latency!r}")
        self._validate_sparse_attention()

    def _validate_sparse_attention(self) -> None:
        if self.attention_in not in ATTENTION_PLACES:
            raise InputError(f"attention_in must be one of {ATTENTION_PLACES}, got {self.attention_in!r}")
        if self.attention_topk is None:
            if self.indexer_heads is not None or self.indexer_dim is not None:
                raise InputError("indexer_heads/indexer_dim describe sparse attention; pass attention_topk too")
            return
        _positive("attention_topk", self.attention_topk, integer=True)
        for name in ("indexer_heads", "indexer_dim"):
            if getattr(self, name) is None:
                raise InputError(f"{name} is required with attention_topk (the indexer's cost); pass a value > 0")
            _positive(name, getattr(self, name), integer=True)

    def sparse_at(self, stage: str) -> bool:
        """Whether the attention of `stage` (pre or experts) is sparse."""
        return self.attention_topk is not None and self.attention_in in ("all", stage)

    def attended_keys(self, stage: str, seq: int) -> int:
        """Keys each query of `stage` scores: every one of its seq, or the k the indexer selects."""
        return min(self.attention_topk, seq) if self.sparse_at(stage) else seq

    @property
    def l_reduced(self) -> int:
        return self.seq_len if self.seq_reduced is None else self.seq_reduced

    @property
    def _expert_power(self) -> int:
        # Per-expert work carries the number of experts once more in the denominator under
        # the parallel reading, because the E experts run concurrently.
        return 1 if self.regime == "parallel" else 0

    def _term_specs(self) -> dict[str, tuple[float, int]]:
        """name -> (coefficient, power of E); only the enabled terms."""
        d0, length, lr, p = float(self.d0), float(self.seq_len), float(self.l_reduced), self._expert_power
        specs: dict[str, tuple[float, int]] = {}
        if self.include_pre:
            specs["qkv_pre"] = (3.0 * length * d0**2, 0)
            specs["attention_pre"] = (length * self.attended_keys("pre", self.seq_len) * d0, 0)
            if self.sparse_at("pre"):
                specs["indexer_pre"] = (length**2 * self._indexer_width, 0)
            if self.ffn_mult is not None:
                specs["ffn_pre"] = (2.0 * self.ffn_mult * length * d0**2, 0)
        # E experts each project a d0/E slice of L' tokens: E * 3 L' (d0/E)^2 = 3 L' d0^2 / E in total.
        specs["qkv_experts"] = (3.0 * lr * d0**2, -1 - p)
        # E experts each score L'^2 pairs on a d0/E slice: E * L'^2 d0/E = L'^2 d0 in total
        # (L' k d0 with sparse attention: k keys per query).
        specs["attention_experts"] = (lr * self.attended_keys("experts", self.l_reduced) * d0, -p)
        if self.sparse_at("experts"):
            # each expert's indexer scores all L'^2 pairs at its own fixed H_I d_I: E times that in total
            specs["indexer_experts"] = (lr**2 * self._indexer_width, 1 - p)
        if self.ffn_mult is not None:
            specs["ffn_experts"] = (2.0 * self.ffn_mult * lr * d0**2, -1 - p)
        specs["overhead"] = (float(self.alpha), 2)
        if self.latency > 0:
            specs["latency"] = (float(self.latency), 1)
        return specs

    @property
    def _indexer_width(self) -> float:
        """MACs per scored (query, key) pair of the indexer."""
        return float(self.indexer_heads * self.indexer_dim)

    def terms(self, experts) -> dict[str, np.ndarray | float]:
        """Each named term of S(E), for scalar or array E (returned in the same shape)."""
        e = _as_experts(experts)
        out = {name: coef * e**power for name, (coef, power) in self._term_specs().items()}
        return {k: (float(v) if np.ndim(v) == 0 else v) for k, v in out.items()}

    def total(self, experts) -> np.ndarray | float:
        """S(E): the sum of all terms."""
        return sum(self.terms(experts).values())

    def power_coefficients(self) -> dict[int, float]:
        """S(E) = sum_k c_k E^k, as {k: c_k}."""
        coeffs: dict[int, float] = {}
        for coef, power in self._term_specs().values():
            coeffs[power] = coeffs.get(power, 0.0) + coef
        return coeffs

    def traditional(self) -> float:
        """The dense full-width layer on L tokens that the sectional layer replaces."""
        d0, length = float(self.d0), float(self.seq_len)
        ffn = 0.0 if self.ffn_mult is None else 2.0 * self.ffn_mult * length * d0**2
        return 3.0 * length * d0**2 + length**2 * d0 + ffn


def _as_experts(experts) -> np.ndarray:
    e = np.asarray(experts, dtype=float)
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise InputError(f"E must be positive and finite, got {experts!r}")
    return e
