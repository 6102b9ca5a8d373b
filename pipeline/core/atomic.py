"""Atomic file writes: a temporary file next to the target, flushed, then renamed over it.

Readers (a clerk opening a report, the drop-folder watcher reading its state) see either the
old file or the new one, never half of one. Standard library only, so the drop-folder code
can use it without pulling in pandas.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def temp_path(final: Path) -> Path:
    """A fresh hidden temporary file next to ``final`` (same directory: rename is atomic).

    Created with the process's umask rather than mkstemp's 0600, so the renamed file has
    the permissions any other file written here would have (clerks may share a folder).
    Hidden and ending in ``.tmp``, so the drop-folder watcher never takes it for an upload.
    """
    while True:
        candidate = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry change to disk (best effort where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return ``path``."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path
