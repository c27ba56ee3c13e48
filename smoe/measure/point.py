"""A measurement point: a flat mapping of short names (E, d, L, r, ...) turned into a RunConfig.

Jax-free on purpose: the CLI validates points and counts the devices they need before jax starts.
"""

from __future__ import annotations

import math
from typing import Any

from smoe.config import RunConfig, config_from_dict
from smoe.errors import UserError

# point key -> (config section, config key)
CONFIG_KEYS = {
    "kind": ("model", "kind"),
    "E": ("model", "n_experts"),
    "d": ("model", "d_model"),
    "L": ("model", "seq_len"),
    "r": ("model", "shorten"),
    "n_layers": ("model", "n_layers"),
    "pre_layers": ("model", "pre_layers"),
    "n_heads": ("model", "n_heads"),
    "expert_heads": ("model", "expert_heads"),
    "ffn_mult": ("model", "ffn_mult"),
    "top_k": ("model", "top_k"),
    "capacity_factor": ("model", "capacity_factor"),
    "recombine": ("model", "recombine"),
    "vocab_size": ("model", "vocab_size"),
    "batch": ("train", "batch_size"),
    "seed": ("train", "seed"),
    "mesh_data": ("mesh", "data"),
    "mesh_expert": ("mesh", "expert"),
}
# Keys that steer the measurement rather than the model.
MEASURE_KEYS = {"repeats": int, "baselines": bool, "devices": int, "processes": int}
DEFAULTS = {"kind": "sectional", "E": 4, "d": 128, "L": 128, "r": 1, "batch": 8, "mesh_data": 1, "mesh_expert": 1}


def normalize(point: Any) -> dict:
    """Defaults filled in and every key checked; raises UserError naming the offending point key."""
    if not isinstance(point, dict):
        raise UserError(f"point: must be a mapping of key: value, got {point!r}")
    for key, value in point.items():
        if key in MEASURE_KEYS:
            expected = MEASURE_KEYS[key]
            if not isinstance(value, expected) or (expected is int and (isinstance(value, bool) or value < 1)):
                raise UserError(f"point.{key}: must be {'a positive integer' if expected is int else 'true or false'}, "
                                f"got {value!r}")
        elif key not in CONFIG_KEYS:
            raise UserError(f"point.{key}: unknown key; valid keys are {sorted(CONFIG_KEYS) + sorted(MEASURE_KEYS)}")
    full = DEFAULTS | point | _mesh_for_devices(point)
    to_config(full)
    if full["mesh_data"] * full["mesh_expert"] % full.get("processes", 1):
        raise UserError(f"point.processes: must divide the mesh size {full['mesh_data'] * full['mesh_expert']}, "
                        f"got {full['processes']}")
    return full


def _mesh_for_devices(point: dict) -> dict:
    """`devices: N` places experts one group per device group: mesh_expert = gcd(E, N), the rest data.

    So a sweep over E on a fixed machine needs no hand-written mesh per point.
    """
    if "devices" not in point:
        return {}
    expert = math.gcd(point.get("E", DEFAULTS["E"]), point["devices"])
    derived = {"mesh_expert": expert, "mesh_data": point["devices"] // expert}
    if any(point.get(key, value) != value for key, value in derived.items()):
        raise UserError(f"point.devices: mesh_data/mesh_expert disagree with devices={point['devices']}; "
                        "give devices or the mesh, not both")
    return derived


def to_config(point: dict) -> RunConfig:
    raw: dict[str, dict] = {"model": {}, "mesh": {}, "train": {}}
    for key, (section, name) in CONFIG_KEYS.items():
        if key in point:
            raw[section][name] = point[key]
    try:
        return config_from_dict(raw)
    except UserError as err:
        raise UserError(_point_names(str(err))) from None


def _point_names(message: str) -> str:
    """Config errors name `model.n_experts`; a point's author wrote `E`, so say both."""
    for key, (section, name) in CONFIG_KEYS.items():
        dotted = f"{section}.{name}"
        if message.startswith(dotted):
            return f"point.{key} ({dotted}){message[len(dotted):]}"
    return message


def baseline(point: dict, kind: str) -> dict:
    """The same point as a dense or top-k model, for ratios measured in the same run."""
    other = {key: value for key, value in point.items() if key != "baselines"} | {"kind": kind}
    if kind == "topk":
        other["top_k"] = min(other.get("top_k", 2), other["E"])
    return other


def devices_needed(points: list[dict]) -> int:
    return max(p["mesh_data"] * p["mesh_expert"] for p in points)
