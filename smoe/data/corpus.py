"""Load a text corpus as byte-level tokens with a deterministic document-level train/val split.

Tokens are raw bytes (ids 0..255, VOCAB_SIZE = 256): no tokenizer to train, version or ship, and
losses convert directly to bits per byte, which compares across corpora and models.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smoe.data.fetch import REGISTRY, corpus_dir, is_fetched
from smoe.errors import UserError

VOCAB_SIZE = 256
# Documents within a split are joined by a blank line: it already occurs everywhere in prose, so
# the model is not taught a boundary byte (such as \x00) that the text itself never contains.
SEPARATOR = b"\n\n"
DEFAULT_VAL_FRACTION = 0.1


@dataclass(frozen=True)
class Corpus:
    """A corpus split into train and val token streams (uint8 arrays of byte ids).

    `train_docs`/`val_docs` name the documents (paths relative to the corpus root) in the order
    they were concatenated. A single-document corpus names that document in both.
    """

    name: str
    train: np.ndarray
    val: np.ndarray
    train_docs: tuple[str, ...]
    val_docs: tuple[str, ...]

    def check_seq_len(self, seq_len: int) -> None:
        """Raise UserError unless both splits hold at least one window of seq_len + 1 tokens."""
        for split, tokens in (("train", self.train), ("val", self.val)):
            if tokens.size < seq_len + 1:
                raise UserError(
                    f"seq_len: {seq_len} needs at least {seq_len + 1} bytes per split, but the {split} "
                    f"split of corpus {self.name!r} has {tokens.size}; lower seq_len, use a larger "
                    "corpus, or change val_fraction"
                )


def load_corpus(
    source: str | os.PathLike[str],
    val_fraction: float = DEFAULT_VAL_FRACTION,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Corpus:
    """Load `source`: a registry name (already fetched), a text file, or a folder of *.txt files.

    A registry name wins over a same-named local path; write `./name` to mean the folder. Each file
    is one document. With two or more documents, whole documents go to val (see `split_documents`).
    A single document is instead split by bytes: its last `val_fraction` of bytes become val.
    """
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val_fraction: {val_fraction} must be strictly between 0 and 1, e.g. 0.1")
    name, docs = _read_documents(source, cache_dir)
    if sum(len(data) for data in docs.values()) == 0:
        raise UserError(f"corpus: {source} contains no text; point it at non-empty .txt files")
    for doc, data in docs.items():
        _check_text(source, doc, data)
    if len(docs) == 1:
        ((doc, data),) = docs.items()
        cut = round(len(data) * (1.0 - val_fraction))
        if cut == 0 or cut == len(data):
            raise UserError(
                f"corpus: the single document {doc!r} ({len(data)} bytes) is too small to split "
                f"with val_fraction={val_fraction}; use a larger text or adjust val_fraction"
            )
        return Corpus(name, _tokens([data[:cut]]), _tokens([data[cut:]]), (doc,), (doc,))
    train_docs, val_docs = split_documents(sorted(docs), val_fraction)
    return Corpus(
        name,
        _tokens([docs[d] for d in train_docs]),
        _tokens([docs[d] for d in val_docs]),
        train_docs,
        val_docs,
    )


def split_documents(names: list[str], val_fraction: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Assign each document to val iff its stable hash (sha256 of its name) is below val_fraction.

    Hashing names, not positions, keeps a document's split fixed when others are added or removed.
    With >= 2 documents both splits are non-empty: if val came out empty the document with the
    smallest hash moves to val; if train came out empty the one with the largest hash moves back.
    Both lists keep the order of `names`.
    """
    scores = {name: _unit_hash(name) for name in names}
    val = {name for name in names if scores[name] < val_fraction}
    if len(names) >= 2:
        if not val:
            val = {min(names, key=scores.__getitem__)}
        elif len(val) == len(names):
            val.discard(max(names, key=scores.__getitem__))
    return tuple(n for n in names if n not in val), tuple(n for n in names if n in val)


def _check_text(source, doc: str, data: bytes) -> None:
    """Byte tokens would accept any file; a NUL byte or invalid UTF-8 means it is not text at all."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"corpus: {doc!r} in {source} is not UTF-8 text (byte {err.start} is {data[err.start:err.start + 1]!r}); "
                        "point data.corpus at text files") from None
    if b"\x00" in data:
        raise UserError(f"corpus: {doc!r} in {source} looks binary (it contains NUL bytes); "
                        "point data.corpus at text files")


def _unit_hash(name: str) -> float:
    """Map a name to [0, 1) via sha256, identically across runs, machines and Python versions."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _read_documents(
    source: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None
) -> tuple[str, dict[str, bytes]]:
    if isinstance(source, str) and source in REGISTRY:
        if not is_fetched(source, cache_dir):
            raise UserError(f"corpus: {source!r} is not fetched yet; run `smoe data fetch {source}` first")
        return source, _read_folder(corpus_dir(source, cache_dir))
    path = Path(source).expanduser()
    if path.is_file():
        return path.stem, {path.name: path.read_bytes()}
    if path.is_dir():
        docs = _read_folder(path)
        if not docs:
            raise UserError(f"corpus: folder {path} has no *.txt files; add some or point at a text file")
        return path.resolve().name, docs
    known = ", ".join(sorted(REGISTRY))
    raise UserError(f"corpus: {source} is neither an existing file or folder nor a known corpus ({known})")


def _read_folder(root: Path) -> dict[str, bytes]:
    # Relative POSIX names keep document identities, hence the split, the same on every OS.
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*.txt"))
        if path.is_file()
    }


def _tokens(parts: list[bytes]) -> np.ndarray:
    # frombuffer over immutable bytes gives a read-only array, which suits a frozen Corpus.
    return np.frombuffer(SEPARATOR.join(parts), dtype=np.uint8)
