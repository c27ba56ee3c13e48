"""Sweep configuration: which points a sweep covers, loaded from YAML and validated up front."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from smoe.config import load_yaml
from smoe.errors import UserError

_REQUIRED = ("name", "kind")
_OPTIONAL = ("base", "grid", "points", "repeats")
# Added to every point when repeats > 1, so repeated measurements get distinct keys.
REPEAT_FIELD = "repeat"


@dataclass(frozen=True)
class SweepSpec:
    name: str
    kind: str
    base: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    points: list = field(default_factory=list)
    repeats: int = 1

    def __post_init__(self) -> None:
        for key in _REQUIRED:
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise UserError(f"sweep config: '{key}' must be a non-empty string, got {value!r}")
        _check_mapping("base", self.base)
        _check_mapping("grid", self.grid)
        for key, values in self.grid.items():
            if not isinstance(values, list):
                raise UserError(f"sweep config: grid.{key} must be a list of values, e.g. {key}: [{values!r}]")
            if not values:
                raise UserError(f"sweep config: grid.{key} is an empty list; give at least one value or remove the key")
        if not isinstance(self.points, list):
            raise UserError("sweep config: 'points' must be a list of mappings")
        for i, point in enumerate(self.points):
            _check_mapping(f"points[{i}]", point)
        # bool is an int subclass; `repeats: true` is a typo, not a count.
        if not isinstance(self.repeats, int) or isinstance(self.repeats, bool) or self.repeats < 1:
            raise UserError(f"sweep config: 'repeats' must be an integer >= 1, got {self.repeats!r}")
        if self.repeats > 1 and any(REPEAT_FIELD in m for m in (self.base, self.grid, *self.points)):
            raise UserError(f"sweep config: '{REPEAT_FIELD}' is reserved when repeats > 1; rename that field")
        try:
            _canonical_json(dataclasses.asdict(self))
        except (TypeError, ValueError) as err:
            raise UserError(f"sweep config: values must be plain YAML scalars, lists or mappings ({err})") from None

    @classmethod
    def from_dict(cls, data: object) -> SweepSpec:
        if not isinstance(data, dict):
            raise UserError("sweep config: the file must be a mapping with keys name, kind, base, grid, points, repeats")
        unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL), key=str)
        if unknown:
            raise UserError(f"sweep config: unknown key {unknown[0]!r}; allowed keys are {', '.join(_REQUIRED + _OPTIONAL)}")
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise UserError(f"sweep config: missing key '{missing[0]}'; add e.g. {missing[0]}: ...")
        # An empty YAML section (`base:`) parses as None; treat it as absent rather than as an error.
        return cls(**{key: value for key, value in data.items() if value is not None})


def _check_mapping(where: str, value: object) -> None:
    if not isinstance(value, dict):
        raise UserError(f"sweep config: '{where}' must be a mapping of field: value, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise UserError(f"sweep config: field name {key!r} in '{where}' must be a string; quote it in the YAML")


def _canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def load_spec(path: str | Path) -> SweepSpec:
    return SweepSpec.from_dict(load_yaml(path))


def spec_hash(spec: SweepSpec) -> str:
    return hashlib.sha256(spec_json(spec).encode()).hexdigest()


def spec_json(spec: SweepSpec) -> str:
    return _canonical_json(dataclasses.asdict(spec))


def point_key(point: dict) -> str:
    """Readable and stable: sorted `field=value`; strings bare, everything else as JSON."""
    return ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v, sort_keys=True)}" for k, v in sorted(point.items()))


def expand(spec: SweepSpec) -> list[dict]:
    """Grid combinations in YAML key order, then explicit points; repeats outermost so a partial
    sweep covers every setting once before measuring any twice."""
    combos: list[dict] = []
    # An empty grid alongside explicit points means "only those points", not an extra base-only point.
    if spec.grid or not spec.points:
        names = list(spec.grid)
        combos = [dict(zip(names, values)) for values in itertools.product(*spec.grid.values())]
    singles = [spec.base | combo for combo in combos] + [spec.base | extra for extra in spec.points]
    if spec.repeats > 1:
        expanded = [point | {REPEAT_FIELD: r} for r in range(spec.repeats) for point in singles]
    else:
        expanded = singles
    seen: set[str] = set()
    for point in expanded:
        key = point_key(point)
        if key in seen:
            raise UserError(f"sweep config: point {key} appears twice; remove the duplicate from grid/points")
        seen.add(key)
    return expanded
