"""A measurement point: a partial run config plus the MeasureSpec that steers its measurement.

A point is a mapping of run-config keys, dotted (`model.n_experts`), nested (`model: {...}`), bare
(`n_layers`) or by a short alias from `smoe.config.ALIASES` (E, d, L, r, batch, mesh_data, ...),
plus the measurement keys of MeasureSpec. `parse_point` converts and validates it once into a
MeasurePoint; everything downstream takes that object. A point with `experts: [1, 2, 4, ...]` is
one *setting* with all its E: its `members` are the single-E points, measured together in rounds
(smoe/measure/setting.py) so that drift of the machine hits every E and the dense baseline alike. Jax-free on purpose: the CLI validates points
and counts the devices they need before jax starts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from smoe.config import ALIASES, RunConfig, config_from_dict, config_key, nest
from smoe.errors import UserError
from smoe.launch import check_processes

_SHORT = {dotted: alias for alias, dotted in ALIASES.items() if alias != "family"}
# The short names a measurement record carries for its config keys (point key -> (section, key)).
CONFIG_KEYS = {_SHORT.get(f"model.{k}", k): ("model", k)
               for k in ("kind", "n_experts", "d_model", "seq_len", "shorten", "n_layers", "pre_layers", "n_heads",
                         "expert_heads", "ffn_mult", "top_k", "capacity_factor", "recombine", "vocab_size")}
CONFIG_KEYS |= {"batch": ("train", "batch_size"), "seed": ("train", "seed"),
                "mesh_data": ("mesh", "data"), "mesh_expert": ("mesh", "expert")}
# A measured point's defaults, in record names: the model of the default sweep on one device.
DEFAULTS = {"kind": "sectional", "E": 4, "d": 128, "L": 128, "r": 1, "batch": 8, "mesh_data": 1, "mesh_expert": 1}


@dataclass(frozen=True)
class MeasureSpec:
    """What steers a measurement rather than the model. `devices: N` places experts one group per
    device group (mesh.expert = gcd(E, N), the rest data), so a sweep over E needs no mesh per point.

    experts: every E of one setting, timed in the same process in rounds (each round every E and the
    dense baseline once, in a freshly shuffled order seeded by train.seed); `repeats` is then the
    number of rounds. payloads: multiples of the expert-stage buffer at which the exchange is also
    timed at every E (latency vs bandwidth); 1 is always timed.
    """

    repeats: int | None = None
    baselines: bool = False
    devices: int | None = None
    processes: int = 1
    experts: tuple[int, ...] | None = None
    payloads: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("experts", "payloads"):
                if value is not None:
                    object.__setattr__(self, f.name, _ascending_ints(f.name, value))
            elif f.name == "baselines":
                if not isinstance(value, bool):
                    raise UserError(f"point.baselines: must be true or false, got {value!r}")
            elif value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise UserError(f"point.{f.name}: must be a positive integer, got {value!r}")


MEASURE_KEYS = {f.name: f.type for f in dataclasses.fields(MeasureSpec)}


def _ascending_ints(name: str, value: Any) -> tuple[int, ...]:
    if (not isinstance(value, (list, tuple)) or not value
            or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in value)):
        raise UserError(f"point.{name}: must be a non-empty list of positive integers, e.g. {name}: [1, 2, 4], "
                        f"got {value!r}")
    if list(value) != sorted(set(value)):
        raise UserError(f"point.{name}: list each value once in ascending order, got {list(value)!r}")
    return tuple(value)


@dataclass(frozen=True)
class MeasurePoint:
    config: RunConfig  # with spec.experts: the config at the smallest E
    spec: MeasureSpec
    # The point in record names with defaults filled in: the leading fields of its record.
    fields: dict = field(compare=False)
    # With spec.experts: one single-E point per E of the setting (else empty).
    members: tuple[MeasurePoint, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        for point in self.members or (self,):
            check_processes(self.spec.processes, point.config.mesh.size, "point.processes")


def _flatten(point: dict) -> dict[str, Any]:
    """Nested sections to dotted keys, every key resolved to its record name or a MeasureSpec field."""
    flat: dict[str, Any] = {}
    for key, value in point.items():
        if key in ("model", "mesh", "train") and isinstance(value, dict):
            flat |= _flatten({f"{key}.{inner}": v for inner, v in value.items()})
            continue
        dotted = None if key in MEASURE_KEYS else config_key(key)
        if key not in MEASURE_KEYS and (dotted is None or dotted.split(".")[0] == "data"):
            raise UserError(f"point.{key}: unknown key; valid keys are run-config keys (model.*, mesh.*, train.*), "
                            f"{sorted(CONFIG_KEYS)} and {sorted(MEASURE_KEYS)}")
        flat[key if dotted is None else _SHORT.get(dotted, dotted.split(".")[1])] = value
    return flat


def parse_point(point: Any) -> MeasurePoint:
    """Defaults filled in and every key checked once; a UserError names the offending point key."""
    if not isinstance(point, dict):
        raise UserError(f"point: must be a mapping of key: value, got {point!r}")
    flat = _flatten(point)
    spec = MeasureSpec(**{k: v for k, v in flat.items() if k in MEASURE_KEYS})
    if spec.experts is not None:
        return _parse_setting(flat, spec)
    full = DEFAULTS | {k: v for k, v in flat.items() if k != "repeats"} | _mesh_for_devices(flat)
    return MeasurePoint(_to_config(full), spec, full)


def _parse_setting(flat: dict, spec: MeasureSpec) -> MeasurePoint:
    """One point per E; the setting's fields are theirs without E and the mesh (which follow E)."""
    if "E" in flat:
        raise UserError("point.E: give either E (one point) or experts (a list: all E of one setting), not both")
    if "devices" not in flat and ("mesh_data" in flat or "mesh_expert" in flat):
        raise UserError("point.experts: the mesh must follow E; give devices: N instead of mesh_data/mesh_expert")
    single = {k: v for k, v in flat.items() if k != "experts"}
    members = tuple(parse_point(single | {"E": e}) for e in spec.experts)
    fields = {k: v for k, v in members[0].fields.items() if k not in ("E", "mesh_data", "mesh_expert")}
    return MeasurePoint(members[0].config, spec, fields | {"experts": list(spec.experts)}, members)


def mesh_for_experts(n_experts: int, devices: int) -> tuple[int, int]:
    """(data, expert) mesh shape of `devices: N` for E experts: the largest expert axis dividing both."""
    expert = math.gcd(n_experts, devices)
    return devices // expert, expert


def _mesh_for_devices(point: dict) -> dict:
    if "devices" not in point:
        return {}
    data, expert = mesh_for_experts(point.get("E", DEFAULTS["E"]), point["devices"])
    derived = {"mesh_expert": expert, "mesh_data": data}
    if any(point.get(key, value) != value for key, value in derived.items()):
        raise UserError(f"point.devices: mesh_data/mesh_expert disagree with devices={point['devices']}; "
                        "give devices or the mesh, not both")
    return derived


def _to_config(full: dict) -> RunConfig:
    flat = {config_key(k): v for k, v in full.items() if k not in MEASURE_KEYS}
    try:
        return config_from_dict(nest(flat))
    except UserError as err:
        # Config errors name `model.n_experts`; a point's author may have written `E`, so say both.
        dotted = str(err).split(":", 1)[0]
        short = _SHORT.get(dotted, dotted.split(".")[-1])
        raise UserError(f"point.{short} ({dotted}):{str(err).split(':', 1)[1]}") from None


def baseline_config(cfg: RunConfig, kind: str) -> RunConfig:
    """The same model as dense or top-k, for ratios measured in the same run."""
    model = dataclasses.replace(cfg.model, kind=kind)
    if kind == "topk":
        model = dataclasses.replace(model, top_k=min(model.top_k, model.n_experts))
    return dataclasses.replace(cfg, model=model)


def devices_needed(points: list[MeasurePoint]) -> int:
    return max(m.config.mesh.size for p in points for m in (p.members or (p,)))
