"""Checks of the ID document files a row names (front and back scans).

A path is relative to the input file's folder and must stay inside it; the file must exist,
be JPEG, PNG or PDF by its content (magic bytes, not its name) and not exceed the size limit.
"""

from __future__ import annotations

from pathlib import Path

import filetype

from pipeline.rules.checks import Code

ALLOWED_TYPES = frozenset({"image/jpeg", "image/png", "application/pdf"})
# filetype needs at most this many leading bytes to recognise a format.
_HEAD_BYTES = 262
_CACHE_LIMIT = 10_000


class DocumentChecker:
    """Checks document paths against one base folder; remembers answers per path."""

    def __init__(self, base_dir: Path, max_bytes: int) -> None:
        self._base = base_dir.resolve()
        self._max_bytes = max_bytes
        self._cache: dict[str, tuple[Code, str] | None] = {}

    def check(self, relative: str) -> tuple[Code, str] | None:
        """The problem with one path as (code, message), or None when the file is fine."""
        if relative in self._cache:
            return self._cache[relative]
        problem = self._check(relative)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[relative] = problem
        return problem

    def _check(self, relative: str) -> tuple[Code, str] | None:
        """Uncached :meth:`check`."""
        try:
            # Files listed on Windows use backslashes; resolve() follows symbolic links, so a
            # link pointing outside is caught below too.
            path = (self._base / relative.replace("\\", "/")).resolve()
        except (OSError, ValueError):
            return Code.BAD_PATH, "file path is not usable (control characters or too long)"
        if not path.is_relative_to(self._base):
            return Code.BAD_PATH, "file path must stay inside the input file's folder"
        try:
            if not path.is_file():
                return (
                    Code.FILE_MISSING,
                    f"file '{_clip(relative)}' not found next to the input file",
                )
            size = path.stat().st_size
            with path.open("rb") as handle:
                head = handle.read(_HEAD_BYTES)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or "unreadable"
            return Code.FILE_MISSING, f"file '{_clip(relative)}' cannot be read ({reason})"
        if size > self._max_bytes:
            limit = self._max_bytes / (1024 * 1024)
            return Code.FILE_TOO_LARGE, f"file '{_clip(relative)}' is larger than {limit:g} MB"
        kind = filetype.guess(head)
        if kind is None or kind.mime not in ALLOWED_TYPES:
            return Code.BAD_FILE_TYPE, f"file '{_clip(relative)}' is not a JPEG, PNG or PDF"
        return None


def _clip(path: str, limit: int = 80) -> str:
    """A path shortened for a message."""
    return path if len(path) <= limit else "…" + path[-(limit - 1) :]
