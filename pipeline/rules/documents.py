"""Checks of the ID document files a row names (front and back scans).

A path is relative to the input file's folder and must stay inside it; the file must exist,
be JPEG, PNG or PDF by its content (magic bytes, not its name) and not exceed the size limit.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

import filetype

from pipeline.rules.checks import Code

ALLOWED_TYPES = frozenset({"image/jpeg", "image/png", "application/pdf"})
# filetype needs at most this many leading bytes to recognise a format.
_HEAD_BYTES = 262
_CACHE_LIMIT = 10_000
# Encoded documents kept for rows naming the same file; bounded (they are large).
_ENCODED_LIMIT = 256
# The row columns naming the scans and the body's side each goes to.
DOCUMENT_SIDES = (("id_front_file", "id_front"), ("id_back_file", "id_back"))


def resolve(base: Path, relative: str) -> Path:
    """Where a row's document path points: relative to ``base``, backslashes as slashes
    (files listed on Windows), symbolic links followed (so a link outside is seen)."""
    return (base / relative.replace("\\", "/")).resolve()


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
            path = resolve(self._base, relative)
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


class DocumentEncoder:
    """Reads and base64-encodes the scans a row names, for the partner body.

    Paths resolve exactly as :class:`DocumentChecker` resolved them when the row was
    validated, so the file sent is the file checked.
    """

    def __init__(self, base_dir: Path) -> None:
        self._base = base_dir.resolve()
        self._cache: dict[str, dict[str, str]] = {}

    def encode(self, relative: str) -> dict[str, str]:
        """``{"base64_data", "content_type"}`` of one document (type by content)."""
        cached = self._cache.get(relative)
        if cached is not None:
            return cached
        data = resolve(self._base, relative).read_bytes()
        kind = filetype.guess(data[:_HEAD_BYTES])
        encoded = {
            "base64_data": base64.b64encode(data).decode("ascii"),
            "content_type": kind.mime if kind is not None else "application/octet-stream",
        }
        if len(self._cache) >= _ENCODED_LIMIT:
            self._cache.clear()
        self._cache[relative] = encoded
        return encoded

    def for_row(self, row: Mapping[str, str]) -> dict[str, dict[str, str]] | None:
        """The encoded documents of a row by side (``id_front``/``id_back``), or None."""
        documents: dict[str, dict[str, str]] = {}
        for column, side in DOCUMENT_SIDES:
            if relative := (row.get(column) or "").strip():
                documents[side] = self.encode(relative)
        return documents or None

