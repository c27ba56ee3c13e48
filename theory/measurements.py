"""Measured timings (E, seconds[, component]) from CSV or JSON lines, validated on the way in."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from theory.errors import InputError


@dataclass(frozen=True)
class Measurements:
    """One row per repetition. component is None when the records do not name one."""

    experts: np.ndarray
    seconds: np.ndarray
    component: np.ndarray | None = None

    def __post_init__(self) -> None:
        e, s = np.asarray(self.experts, dtype=float), np.asarray(self.seconds, dtype=float)
        if e.ndim != 1 or e.shape != s.shape or e.size == 0:
            raise InputError(f"need equally long, non-empty E and seconds, got {e.shape} and {s.shape}")
        if not np.all(np.isfinite(e)) or np.any(e < 1) or np.any(e != np.round(e)):
            raise InputError(f"E must be integers >= 1; bad values: {np.unique(e[~(np.isfinite(e) & (e >= 1) & (e == np.round(e)))])}")
        if not np.all(np.isfinite(s)):
            raise InputError(f"seconds must be finite; {int(np.sum(~np.isfinite(s)))} rows are NaN or inf; drop them")
        if np.any(s <= 0):
            raise InputError(f"seconds must be > 0; {int(np.sum(s <= 0))} rows are zero or negative; drop them")
        if self.component is not None and np.shape(self.component) != e.shape:
            raise InputError("component must have one entry per row")
        object.__setattr__(self, "experts", e.astype(int))
        object.__setattr__(self, "seconds", s)

    def select(self, component: str | None) -> Measurements:
        """The rows of one component; with None, insist that there is at most one."""
        names = [] if self.component is None else sorted(set(self.component.tolist()))
        if component is None:
            if len(names) > 1:
                raise InputError(f"records hold components {names}; choose one with --component")
            return self
        if component not in names:
            raise InputError(f"component {component!r} not in the records; available: {names}")
        keep = self.component == component
        return Measurements(self.experts[keep], self.seconds[keep], self.component[keep])

    def subset(self, keep: np.ndarray) -> Measurements:
        comp = None if self.component is None else self.component[keep]
        return Measurements(self.experts[keep], self.seconds[keep], comp)


def measurements_from_records(records: Iterable[Mapping], source: str = "records") -> Measurements:
    """Rows as mappings with keys E, seconds and optionally component (other keys are ignored)."""
    experts, seconds, components = [], [], []
    for i, row in enumerate(records, start=1):
        missing = [k for k in ("E", "seconds") if k not in row]
        if missing:
            raise InputError(f"{source} row {i}: missing {missing}; each row needs E and seconds")
        try:
            experts.append(float(row["E"]))
            seconds.append(float(row["seconds"]))
        except (TypeError, ValueError):
            raise InputError(f"{source} row {i}: E and seconds must be numbers, got {row['E']!r}, {row['seconds']!r}") from None
        components.append(row.get("component"))
    if not experts:
        raise InputError(f"{source}: no rows; need at least one (E, seconds) record")
    has_component = any(c not in (None, "") for c in components)
    comp = np.asarray([str(c) for c in components]) if has_component else None
    return Measurements(np.asarray(experts), np.asarray(seconds), comp)


def read_measurement_text(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as err:
        raise InputError(f"cannot read measurements {str(path)!r}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"measurements {str(path)!r} is not UTF-8 text (a binary file?); give a CSV file") from None


def load_measurements(path: str | Path) -> Measurements:
    """CSV with a header containing E and seconds, or JSON lines (.jsonl/.json, or a first '{')."""
    path = Path(path)
    text = read_measurement_text(path)
    if path.suffix in (".jsonl", ".json") or text.lstrip().startswith("{"):
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise InputError(f"{path.name} line {i}: not a JSON object; write one record per line") from None
        return measurements_from_records(rows, path.name)
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or not {"E", "seconds"} <= set(reader.fieldnames):
        programs = sorted({name.removesuffix(".samples_s") for name in reader.fieldnames or ()
                            if name.endswith(".samples_s") and "." not in name.removesuffix(".samples_s")})
        hint = f"; for a `smoe measure`/`smoe sweep --export` file pick a column with --program {programs}" \
            if programs else f" (its header starts {(reader.fieldnames or [])[:4]})"
        raise InputError(f"{path.name}: the CSV header must contain E and seconds{hint}")
    return measurements_from_records(reader, path.name)
