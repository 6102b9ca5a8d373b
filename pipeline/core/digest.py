"""The sha256 of a file's content: how a file is recognised when it comes back.

A nightly submit finds the interrupted batch it must resume by the file's sha256, and the drop
folder refuses content it has already taken by it. Both compare with the sha256 that ingest
records for a batch (computed in the same pass that sniffs the file, in
``pipeline.ingest.sniffing``), so the digest is defined once, here: the hex sha256 of the raw
bytes, nothing else. Standard library only, like the drop-folder code that uses it.

A symbolic link is not followed unless the caller asks for it: the drop folder hashes names
that anyone who can write to the inbox chose, and a link there must not make the watcher read
a file outside the drop folder. A nightly submit names its file itself and may well name a
link to the latest export, which ingest follows too, so it asks.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# O_NOFOLLOW is POSIX; O_BINARY exists (and matters) only on Windows.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def file_sha256(path: Path, *, follow_symlinks: bool = False) -> str:
    """Hex sha256 of the file's bytes.

    Unless ``follow_symlinks`` is true, a path whose last component is a symbolic link is not
    opened: ``OSError`` (``ELOOP``) is raised instead, where the platform has ``O_NOFOLLOW``.
    """
    flags = os.O_RDONLY | _BINARY | (0 if follow_symlinks else _NOFOLLOW)
    with os.fdopen(os.open(path, flags), "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
