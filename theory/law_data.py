"""Loss-law data: the packaged Chinchilla reference set and user CSVs (N, D, loss[, E | G])."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np

from theory.errors import InputError

REFERENCE_CSV = "chinchilla_svg_extracted.csv"
DROPPED_HIGHEST_LOSS = 5  # Besiroglu et al. 2024 drop these as extraction outliers


def _read_columns(text: str, source: str, columns: list[str]) -> dict[str, np.ndarray]:
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{source}: header lacks {missing}; need columns {columns} "
                         "(name other headers with --columns NAME=HEADER,...)")
    out: dict[str, list[float]] = {c: [] for c in columns}
    for i, row in enumerate(reader, start=2):
        for c in columns:
            try:
                out[c].append(float(row[c]))
            except (TypeError, ValueError):
                raise InputError(f"{source} line {i}: column {c} must be a number, got {row[c]!r}") from None
    return {c: np.asarray(v) for c, v in out.items()}


def load_chinchilla_reference() -> dict[str, np.ndarray]:
    """N, D (= C / 6N) and loss of Hoffmann et al. Fig. 4, minus the 5 highest-loss runs."""
    text = resources.files("theory").joinpath("data", REFERENCE_CSV).read_text()
    cols = _read_columns(text, REFERENCE_CSV, ["Model Size", "Training FLOP", "loss"])
    n_params, flops, loss = cols["Model Size"], cols["Training FLOP"], cols["loss"]
    keep = np.argsort(loss)[: loss.size - DROPPED_HIGHEST_LOSS]
    keep.sort()  # keep file order so resampling with a seed is reproducible across numpy versions
    return {"N": n_params[keep], "D": flops[keep] / (6.0 * n_params[keep]), "loss": loss[keep]}


def parse_columns(text: str | None) -> dict[str, str]:
    """`--columns "N=Model Size,C=Training FLOP"` -> {"N": "Model Size", "C": "Training FLOP"}."""
    if not text:
        return {}
    pairs = [item.partition("=") for item in text.split(",")]
    bad = [name for name, sep, header in pairs if not (sep and name.strip() and header.strip())]
    if bad:
        raise InputError(f"--columns: {bad[0]!r} must look like NAME=HEADER, e.g. N=params,D=tokens,loss=final_loss")
    return {name.strip(): header.strip() for name, _, header in pairs}


def load_law_csv(path: str | Path, features: tuple[str, ...], columns: dict[str, str] | None = None
                 ) -> dict[str, np.ndarray]:
    """The feature columns (e.g. N, D) and loss of a user CSV. `columns` maps a name to the CSV header
    that holds it; C (training FLOPs) may stand in for D, which is then C / (6 N)."""
    path = Path(path)
    columns = dict(columns or {})
    allowed = {*features, "loss"} | ({"C"} if {"N", "D"} <= set(features) else set())
    unknown = sorted(set(columns) - allowed)
    if unknown:
        raise InputError(f"--columns: {unknown[0]!r} is not a column of this form; map some of {sorted(allowed)}")
    try:
        text = path.read_text()
    except OSError as err:
        raise InputError(f"cannot read law data {str(path)!r}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"law data {str(path)!r} is not UTF-8 text (a binary file?); give a CSV file") from None
    from_compute = "C" in columns and "D" not in columns
    names = [name for name in (*features, "loss") if not (from_compute and name == "D")]
    names += ["C"] if from_compute else []
    headers = {name: columns.get(name, name) for name in names}
    read = _read_columns(text, path.name, list(headers.values()))
    data = {name: read[header] for name, header in headers.items()}
    if from_compute:
        data["D"] = data.pop("C") / (6.0 * data["N"])
    return data
