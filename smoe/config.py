"""Frozen, validated run configs loaded from YAML.

Every check runs in `__post_init__`, before any work: a bad value raises `UserError` with one line
naming the key and the fix, and the CLI turns that into exit code 2 with nothing written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from smoe.errors import UserError, require as _require
from smoe.routing_config import check_routing

MODEL_KINDS = ("dense", "topk", "sectional")
RECOMBINE_MODES = ("none", "mix")
ATTENTION_KINDS = ("dense", "indexer")
# "dense" runs the indexer for its loss but attends to every past key (the indexer warm-up stage)
ATTENTION_MODES = ("mask", "gather", "block", "dense")
ATTENTION_PLACES = ("all", "pre", "experts")
# what top-k selects from: the learned indexer, or a baseline with the same k
ATTENTION_SELECTORS = ("indexer", "window", "random")
TRAIN_STAGES = ("dense", "indexer_warmup", "sparse")
COMPUTE_DTYPES = ("float32", "bfloat16")
# reference: the hand-written softmax(q.k)v; xla / cudnn: jax.nn.dot_product_attention's implementations
ATTENTION_IMPLS = ("reference", "xla", "cudnn")
REMAT_MODES = ("none", "block")


def _positive(obj: Any, section: str, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _require(value > 0, f"{section}.{name}", f"must be > 0, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """One causal byte-level LM; `kind` picks what replaces the dense blocks."""

    kind: str = "sectional"
    vocab_size: int = 256
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    ffn_mult: int = 4
    seq_len: int = 128
    n_experts: int = 4
    # token-routed top-k MoE
    top_k: int = 2
    capacity_factor: float = 1.25
    load_balance_coef: float = 0.01
    router_z_coef: float = 0.001
    # sectional MoE: the first `pre_layers` of `n_layers` are full-width pre-expert blocks
    pre_layers: int = 1
    expert_heads: int = 1
    shorten: int = 1
    recombine: str = "mix"
    # MH-MoE-style sub-token routing in the sectional experts (issue 11): each slice's FFN is routed
    # among this many candidate FFNs of the slice's width by the keys below; 1 = plain sectional
    slice_experts: int = 1
    # adaptive routing (issue 11; smoe/routing_config.py); kind: topk, or sectional with slice_experts > 1.
    # k_target sizes expert capacity for top_p and controlled routing and is the controller's target;
    # k_cap = 0 means no cap (every expert the router chooses among).
    routing: str = "top_k"
    top_p: float = 0.4
    k_target: float = 2.0
    k_cap: int = 0
    balance: str = "switch"
    dynamic_loss_coef: float = 0.0
    fallback_fraction: float = 0.0
    renormalize_gates: bool = False
    # sparse attention (issue 15)
    attention: str = "dense"
    attention_topk: int = 64
    attention_mode: str = "mask"
    attention_block: int = 16
    indexer_heads: int = 4
    indexer_dim: int = 16
    attention_in: str = "all"
    attention_select: str = "indexer"
    attention_sinks: int = 4
    # precision (issue 12): parameters and optimizer state stay float32; matmuls run in compute_dtype,
    # softmax, norms and the loss in float32
    compute_dtype: str = "float32"
    # attention kernel of the dense attention blocks, and per-block rematerialisation (issue 12)
    attention_impl: str = "reference"
    remat: str = "none"

    def __post_init__(self) -> None:
        _require(self.kind in MODEL_KINDS, "model.kind", f"must be one of {MODEL_KINDS}, got {self.kind!r}")
        _positive(self, "model", "vocab_size", "d_model", "n_layers", "n_heads", "ffn_mult", "seq_len",
                  "n_experts", "top_k", "capacity_factor", "expert_heads", "shorten", "slice_experts")
        _require(self.d_model % self.n_heads == 0, "model.n_heads",
                 f"must divide d_model={self.d_model}, got {self.n_heads}")
        _require(self.load_balance_coef >= 0 and self.router_z_coef >= 0, "model.load_balance_coef",
                 "loss coefficients must be >= 0")
        if self.kind == "sectional":
            _require(self.d_model % self.n_experts == 0, "model.n_experts",
                     f"must divide d_model={self.d_model}, got {self.n_experts} (pick a divisor of d_model)")
            slice_width = self.d_model // self.n_experts
            _require(slice_width % self.expert_heads == 0, "model.expert_heads",
                     f"must divide the expert slice width d_model/n_experts={slice_width}, got {self.expert_heads}")
            _require(0 <= self.pre_layers < self.n_layers, "model.pre_layers",
                     f"must be in [0, n_layers={self.n_layers}) so at least one expert layer remains, "
                     f"got {self.pre_layers}")
            _require(self.seq_len % self.shorten == 0, "model.shorten",
                     f"must divide seq_len={self.seq_len}, got {self.shorten}")
            _require(self.recombine in RECOMBINE_MODES, "model.recombine",
                     f"must be one of {RECOMBINE_MODES}, got {self.recombine!r}")
            _require(self.slice_experts == 1 or self.attention == "dense", "model.slice_experts",
                     "routed slice FFNs run with dense attention; set model.attention: dense or slice_experts: 1")
        _require(self.kind == "sectional" or self.slice_experts == 1, "model.slice_experts",
                 f"routes the FFNs of sectional slices; drop it or set model.kind: sectional, got {self.slice_experts}")
        check_routing(self)
        self._validate_sparse_attention()
        self._check_speed_options()

    def _check_speed_options(self) -> None:
        _require(self.compute_dtype in COMPUTE_DTYPES, "model.compute_dtype",
                 f"must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}")
        _require(self.attention_impl in ATTENTION_IMPLS, "model.attention_impl",
                 f"must be one of {ATTENTION_IMPLS}, got {self.attention_impl!r}")
        _require(self.remat in REMAT_MODES, "model.remat", f"must be one of {REMAT_MODES}, got {self.remat!r}")
        _require(self.attention_impl == "reference" or self.attention == "dense", "model.attention_impl",
                 "indexer attention has its own kernel; use attention_impl: reference with attention: indexer")
        _require(self.attention_impl != "cudnn" or self.compute_dtype == "bfloat16", "model.attention_impl",
                 "cudnn flash attention needs 16-bit inputs; set model.compute_dtype: bfloat16 or use xla")

    @property
    def routed(self) -> bool:
        """Whether tokens are routed among experts: kind topk, or sectional slices with candidate FFNs."""
        return self.kind == "topk" or (self.kind == "sectional" and self.slice_experts > 1)

    @property
    def routed_experts(self) -> int:
        """The experts one router chooses among: n_experts (topk), slice_experts (sectional)."""
        return self.n_experts if self.kind == "topk" else self.slice_experts

    @property
    def routed_layers(self) -> range:
        """The layers whose FFN is routed (their metrics are layer{i}/mean_k, ...)."""
        if not self.routed:
            return range(0)
        return range(self.n_layers) if self.kind == "topk" else range(self.pre_layers, self.n_layers)

    @property
    def max_choices(self) -> int:
        """Choice columns per token: top_k, or k_cap (else every expert) for the adaptive routers."""
        if self.routing == "top_k":
            return self.top_k
        return self.k_cap or self.routed_experts

    @property
    def capacity_k(self) -> float:
        """The experts-per-token that expert capacity is sized for."""
        return self.top_k if self.routing == "top_k" else self.k_target

    def _validate_sparse_attention(self) -> None:
        _require(self.attention in ATTENTION_KINDS, "model.attention",
                 f"must be one of {ATTENTION_KINDS}, got {self.attention!r}")
        if self.attention == "dense":
            return
        _require(self.kind in ("dense", "sectional"), "model.attention",
                 f"indexer attention exists for kind dense and sectional, not {self.kind!r}; use attention: dense")
        _require(self.attention_mode in ATTENTION_MODES, "model.attention_mode",
                 f"must be one of {ATTENTION_MODES}, got {self.attention_mode!r}")
        _require(self.attention_in in ATTENTION_PLACES, "model.attention_in",
                 f"must be one of {ATTENTION_PLACES}, got {self.attention_in!r}")
        _require(self.kind == "sectional" or self.attention_in == "all", "model.attention_in",
                 f"pre/experts name sectional stages; kind {self.kind!r} needs attention_in: all")
        _positive(self, "model", "attention_topk", "attention_block", "indexer_heads", "indexer_dim")
        _require(self.attention_select in ATTENTION_SELECTORS, "model.attention_select",
                 f"must be one of {ATTENTION_SELECTORS}, got {self.attention_select!r}")
        _require(self.attention_select != "window" or 0 <= self.attention_sinks < self.attention_topk,
                 "model.attention_sinks",
                 f"must be in [0, attention_topk={self.attention_topk}) so the window keeps the query itself, "
                 f"got {self.attention_sinks}")
        if self.attention_mode == "block":
            _require(self.attention_topk % self.attention_block == 0, "model.attention_topk",
                     f"must be a multiple of attention_block={self.attention_block} in block mode, "
                     f"got {self.attention_topk}")
            lengths = {self.seq_len}
            if self.kind == "sectional" and self.attention_in != "pre":
                lengths.add(self.seq_len // self.shorten)
            for length in lengths:
                _require(length % self.attention_block == 0, "model.attention_block",
                         f"must divide the attended length {length} (seq_len, or seq_len/shorten in the experts), "
                         f"got {self.attention_block}")

    @property
    def d_ff(self) -> int:
        return self.ffn_mult * self.d_model

    @property
    def expert_width(self) -> int:
        return self.d_model // self.n_experts

    @property
    def expert_layers(self) -> int:
        return self.n_layers - self.pre_layers


@dataclass(frozen=True)
class MeshConfig:
    """Device mesh ("data", "expert"); its size is checked against the devices when it is built."""

    data: int = 1
    expert: int = 1

    def __post_init__(self) -> None:
        _positive(self, "mesh", "data", "expert")

    @property
    def size(self) -> int:
        return self.data * self.expert


@dataclass(frozen=True)
class DataConfig:
    corpus: str = "shakespeare"
    val_fraction: float = 0.1
    cache_dir: str = ""

    def __post_init__(self) -> None:
        _require(bool(self.corpus), "data.corpus", "must name a fetched corpus or a local text file/folder")
        _require(0.0 < self.val_fraction < 1.0, "data.val_fraction",
                 f"must be in (0, 1), got {self.val_fraction}")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 200
    batch_size: int = 16
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 100
    eval_batches: int = 8
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    # Length of the warmup+cosine schedule; 0 means `steps`. `smoe train --extend` pins it to the
    # original horizon so the steps already taken keep their learning rates (see README).
    decay_steps: int = 0
    # sparse attention (issue 15): dense pre-training, indexer warm-up (only the indexer learns), sparse training
    stage: str = "dense"

    def __post_init__(self) -> None:
        _positive(self, "train", "steps", "batch_size", "learning_rate", "grad_clip", "eval_every",
                  "eval_batches", "checkpoint_every", "keep_checkpoints", "log_every")
        _require(0 <= self.warmup_steps < self.steps, "train.warmup_steps",
                 f"must be in [0, steps={self.steps}), got {self.warmup_steps}")
        _require(self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        _require(self.stage in TRAIN_STAGES, "train.stage", f"must be one of {TRAIN_STAGES}, got {self.stage!r}")
        _require(self.decay_steps == 0 or self.warmup_steps < self.decay_steps <= self.steps, "train.decay_steps",
                 f"must be 0 (= steps) or in (warmup_steps={self.warmup_steps}, steps={self.steps}], "
                 f"got {self.decay_steps}")

    @property
    def schedule_steps(self) -> int:
        return self.decay_steps or self.steps


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        # Cross-section rules: the batch is sharded over every device, experts over the expert axis.
        _require(self.train.batch_size % self.mesh.size == 0, "train.batch_size",
                 f"must be divisible by mesh.data*mesh.expert={self.mesh.size}, got {self.train.batch_size}")
        if self.model.kind != "dense":
            _require(self.model.n_experts % self.mesh.expert == 0, "mesh.expert",
                     f"must divide model.n_experts={self.model.n_experts}, got {self.mesh.expert}")
        _require((self.train.stage == "dense") == (self.model.attention == "dense"), "train.stage",
                 f"stage {self.train.stage!r} does not fit model.attention={self.model.attention!r}: stage dense "
                 "trains attention: dense; a model with attention: indexer trains in indexer_warmup or sparse")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTION_TYPES = {"model": ModelConfig, "mesh": MeshConfig, "data": DataConfig, "train": TrainConfig}


def _coerce(key: str, value: Any, default: Any) -> Any:
    """YAML gives ints for `1` and strings for `1e-3`; accept what a person means, reject the rest."""
    if isinstance(default, bool):
        _require(isinstance(value, bool), key, f"must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        _require(isinstance(value, int) and not isinstance(value, bool), key, f"must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UserError(f"{key}: must be a number, got {value!r}") from None
    _require(isinstance(value, str), key, f"must be a string, got {value!r}")
    return value


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    _require(isinstance(raw, dict), "config", "must be a YAML mapping with sections model/mesh/data/train")
    sections = {}
    for section, values in raw.items():
        _require(section in _SECTION_TYPES, section,
                 f"unknown section; valid sections are {sorted(_SECTION_TYPES)}")
        values = values or {}
        _require(isinstance(values, dict), section, "must be a mapping of key: value")
        cls = _SECTION_TYPES[section]
        defaults = cls()
        valid = {f.name for f in fields(cls)}
        kwargs = {}
        for key, value in values.items():
            _require(key in valid, f"{section}.{key}", f"unknown key; valid keys are {sorted(valid)}")
            kwargs[key] = _coerce(f"{section}.{key}", value, getattr(defaults, key))
        sections[section] = cls(**kwargs)
    return RunConfig(**sections)


# Short names a sweep or measure point may use for run-config keys; resolved here and nowhere else.
ALIASES = {"E": "model.n_experts", "d": "model.d_model", "L": "model.seq_len", "r": "model.shorten",
           "family": "model.kind", "batch": "train.batch_size", "mesh_data": "mesh.data", "mesh_expert": "mesh.expert"}


def config_key(name: str) -> str | None:
    """`section.key` for a dotted key, an alias, or a bare key of one section (`n_layers`, `seed`);
    None when `name` is none of these."""
    if name in ALIASES:
        return ALIASES[name]
    section, _, key = name.rpartition(".")
    owners = [s for s, cls in _SECTION_TYPES.items() if key in {f.name for f in fields(cls)} and section in ("", s)]
    return f"{owners[0]}.{key}" if len(owners) == 1 else None


def nest(flat: dict[str, Any]) -> dict[str, dict]:
    """{"model.n_experts": 8} -> {"model": {"n_experts": 8}}."""
    raw: dict[str, dict] = {}
    for dotted, value in flat.items():
        section, key = dotted.split(".")
        raw.setdefault(section, {})[key] = value
    return raw


def load_yaml(path: str | Path) -> Any:
    """The one YAML reader for configs: a missing file or bad YAML is a one-line UserError."""
    path = Path(path)
    _require(path.is_file(), "config", f"file {str(path)!r} not found; pass an existing YAML file")
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"config: {path} is not valid YAML ({str(err).splitlines()[0]})") from None


def parse_sets(items: list[str]) -> list[tuple[str, Any]]:
    """The one `--set KEY=VALUE` parser; values parse as YAML scalars."""
    parsed = []
    for item in items:
        key, sep, text = item.partition("=")
        _require(bool(sep) and bool(key), f"--set {item}", "must look like key=value")
        parsed.append((key, yaml.safe_load(text)))
    return parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`--set model.n_experts=8` style overrides on a run config mapping."""
    merged = {section: dict(values or {}) for section, values in (raw or {}).items()}
    for key, value in parse_sets(overrides):
        _require(key.count(".") == 1, f"--set {key}", "must look like section.key=value")
        section, name = key.split(".")
        merged.setdefault(section, {})[name] = value
    return merged


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    raw = (load_yaml(path) or {}) if path is not None else {}
    _require(isinstance(raw, dict), "config", f"{path} must be a YAML mapping with sections "
             f"model/mesh/data/train, got {type(raw).__name__}")
    return config_from_dict(apply_overrides(raw, list(overrides)))
