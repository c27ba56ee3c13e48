"""load_corpus: sources, byte tokens and the deterministic document-level split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smoe.data.corpus import SEPARATOR, load_corpus, split_documents
from smoe.errors import UserError


def _write_docs(root: Path, count: int) -> list[str]:
    names = []
    for i in range(count):
        rel = f"sub{i % 3}/doc{i:03d}.txt"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(f"document {i}\n".encode() * 20)
        names.append(rel)
    return sorted(names)


def test_split_is_deterministic_and_partitions():
    names = [f"doc{i}.txt" for i in range(200)]
    train, val = split_documents(names, 0.1)
    assert (train, val) == split_documents(list(names), 0.1)
    assert sorted(train + val) == sorted(names) and not set(train) & set(val)
    assert 5 <= len(val) <= 40  # about 10% of 200


def test_split_of_a_document_ignores_the_others():
    names = [f"doc{i}.txt" for i in range(50)]
    _, val = split_documents(names, 0.3)
    _, val_more = split_documents(names + ["extra.txt"], 0.3)
    assert set(val) == set(val_more) - {"extra.txt"}


@pytest.mark.parametrize("fraction", [1e-9, 0.999999999])
@pytest.mark.parametrize("count", [2, 3, 10])
def test_both_splits_non_empty(count, fraction):
    train, val = split_documents([f"d{i}" for i in range(count)], fraction)
    assert train and val and len(train) + len(val) == count


def test_folder_loading(tmp_path):
    names = _write_docs(tmp_path, 12)
    (tmp_path / "notes.md").write_text("ignored")
    corpus = load_corpus(tmp_path, val_fraction=0.25)
    assert sorted(corpus.train_docs + corpus.val_docs) == names
    expected = SEPARATOR.join((tmp_path / d).read_bytes() for d in corpus.train_docs)
    assert corpus.train.dtype == np.uint8 and corpus.train.tobytes() == expected
    assert corpus.val.tobytes() == SEPARATOR.join((tmp_path / d).read_bytes() for d in corpus.val_docs)
    assert corpus == corpus and load_corpus(tmp_path, val_fraction=0.25).val_docs == corpus.val_docs


def test_single_document_splits_by_bytes(tmp_path):
    text = tmp_path / "book.txt"
    data = (bytes(range(32, 127)) * 11)[:1024]  # every printable ASCII byte, so a misplaced cut shows
    text.write_bytes(data)
    corpus = load_corpus(text, val_fraction=0.25)
    assert corpus.name == "book"
    assert corpus.train_docs == corpus.val_docs == ("book.txt",)
    assert corpus.train.tobytes() == data[:768] and corpus.val.tobytes() == data[768:]


def test_registry_name_must_be_fetched(tmp_path):
    with pytest.raises(UserError, match="smoe data fetch shakespeare"):
        load_corpus("shakespeare", cache_dir=tmp_path)


def _file(root: Path, data: bytes) -> Path:
    (root / "doc.txt").write_bytes(data)
    return root / "doc.txt"


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p / "missing", "neither an existing file"),
        (lambda p: p, "no \\*.txt files"),
        (lambda p: _file(p, b""), "contains no text"),
        (lambda p: _file(p, b"ab"), "too small to split"),
    ],
)
def test_bad_sources_are_user_errors(tmp_path, make, match):
    with pytest.raises(UserError, match=match):
        load_corpus(make(tmp_path))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5])
def test_bad_val_fraction(tmp_path, fraction):
    _write_docs(tmp_path, 3)
    with pytest.raises(UserError, match="val_fraction"):
        load_corpus(tmp_path, val_fraction=fraction)


def test_check_seq_len(tmp_path):
    _write_docs(tmp_path, 4)
    corpus = load_corpus(tmp_path, val_fraction=0.5)
    corpus.check_seq_len(corpus.val.size - 1)
    with pytest.raises(UserError, match="seq_len"):
        corpus.check_seq_len(max(corpus.train.size, corpus.val.size))
