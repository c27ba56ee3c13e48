"""Atomic file writes: a reader (or a kill) sees the old file or the new one, never half of one.

Each writer fills a temporary sibling in the same directory (so the final rename stays on one
filesystem) and renames it over the target; on any error the temporary is removed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path with the target's suffix (matplotlib picks the format from it);
    whatever the body writes there replaces `path` when the body returns."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private; results are meant to be shared like any output.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
