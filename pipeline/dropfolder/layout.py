"""File-system mechanics of the drop folder: layout, safe names, settling, moves, state files.

Nothing here knows about batches being run; ``pipeline.dropfolder.watcher`` drives these
pieces. Only the standard library is used, so the mechanics are tested directly on a
temporary directory.

Safety rules every function keeps:

- a name read from ``inbox/`` is a single directory entry (it never contains ``/``), and every
  name written elsewhere is first passed through :func:`safe_name`, so no path built here can
  leave the drop folder, however the file was called (``..``, 300 characters, bytes that are
  not UTF-8);
- symbolic links and other non-regular entries are never opened or followed;
- a move never overwrites: a name already taken gets a ``-N`` suffix;
- state files are written to a temporary name, flushed to disk, then renamed into place, so a
  crash leaves either the old or the new content, never half of one.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.atomic import atomic_write_text
from pipeline.core.errors import UserError

INBOX = "inbox"
PROCESSING = "processing"
OUTBOX = "outbox"
DONE = "done"
FAILED = "failed"
SUBDIRS = (INBOX, PROCESSING, OUTBOX, DONE, FAILED)
# Where the ID scans that dropped files name live (read only; may be a link to a share).
DOCUMENTS = "documents"

STATE_FILE = ".watch-state.json"
LOCK_FILE = ".watch.lock"
SIDECAR_SUFFIX = ".batch"
STAGING_SUFFIX = ".out"
ERROR_SUFFIX = ".error.txt"
TMP_SUFFIX = ".tmp"
# Suffixes the watcher itself writes next to inputs in processing/; an input that happens to
# end like one is renamed (trailing "_") so it can never be mistaken for our own file.
RESERVED_SUFFIXES = (SIDECAR_SUFFIX, STAGING_SUFFIX, TMP_SUFFIX, ERROR_SUFFIX)

# Bytes, not characters: NAME_MAX is 255 bytes on Linux, and outbox names add the batch id
# and ".report.csv" to the stem, so stems are kept well below the limit.
MAX_NAME_BYTES = 120
_MAX_EXTENSION_CHARS = 10


class DropFolderError(UserError):
    """The drop folder cannot be used (not a directory, not writable, already watched)."""


@dataclass(frozen=True, slots=True)
class Layout:
    """The five sub-directories of a drop folder, and its state and lock files."""

    root: Path

    @property
    def inbox(self) -> Path:
        """Where users drop files."""
        return self.root / INBOX

    @property
    def processing(self) -> Path:
        """Files whose batch is running, with their ``.batch`` sidecars."""
        return self.root / PROCESSING

    @property
    def outbox(self) -> Path:
        """Reports and summaries."""
        return self.root / OUTBOX

    @property
    def done(self) -> Path:
        """Inputs whose batch finished."""
        return self.root / DONE

    @property
    def failed(self) -> Path:
        """Inputs that could not be used, each with an ``.error.txt``."""
        return self.root / FAILED

    @property
    def documents(self) -> Path:
        """The default folder of the ID scans rows name (``docs/front.png`` in a row is
        ``documents/docs/front.png``): a dropped file sits in ``processing/`` while it runs,
        so paths relative to its own folder would find nothing there."""
        return self.root / DOCUMENTS

    @property
    def state_file(self) -> Path:
        """The sha256 → batch map that survives restarts."""
        return self.root / STATE_FILE

    @property
    def lock_file(self) -> Path:
        """Held (``flock``) by the one watcher of this folder."""
        return self.root / LOCK_FILE

    def create(self) -> None:
        """Create the folder and its sub-directories; a one-line error when that fails."""
        try:
            for sub in (*SUBDIRS, DOCUMENTS):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            message = f"{self.root}: not a directory (or a sub-folder is a file)"
            raise DropFolderError(message) from None
        except OSError as exc:
            message = f"{self.root}: cannot create the drop folder ({exc.strerror})"
            raise DropFolderError(message) from None
        for sub in SUBDIRS:
            # A symlinked sub-folder would let moves land outside the drop folder.
            if (self.root / sub).is_symlink():
                raise DropFolderError(f"{self.root / sub}: must be a directory, not a link")


def is_temporary(name: str) -> bool:
    """True for names a writer is still working on: dot-files, ``.part``, ``~$`` lock files."""
    lowered = name.lower()
    return (
        name.startswith(".")
        or name.startswith("~$")
        or lowered.endswith((".part", ".partial", ".crdownload", ".tmp", "~"))
    )


def display_name(name: str) -> str:
    """The name as text that can be printed or stored in JSON (undecodable bytes replaced)."""
    return os.fsencode(name).decode("utf-8", "replace")


def _clip_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits in ``limit`` bytes."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


def safe_name(name: str | bytes) -> str:
    """A name that is safe as one path component in any of the drop folder's directories.

    Keeps letters and digits of any script, ``.``, ``-``, ``_``, ``+``, parentheses and
    spaces; everything else (path separators, control characters, bytes that are not UTF-8)
    becomes ``_``. Leading dots and dashes are dropped (no hidden files, no option-like
    names), the result fits :data:`MAX_NAME_BYTES` with its extension kept, and it never ends
    like a file the watcher writes itself.
    """
    raw = name if isinstance(name, bytes) else os.fsencode(name)
    text = unicodedata.normalize("NFC", raw.decode("utf-8", "replace"))
    cleaned = "".join(
        ch if (ch.isalnum() or ch in "._-+() ") and ch != "\ufffd" else "_" for ch in text
    )
    cleaned = cleaned.strip().lstrip(".-").strip()
    stem, dot, ext = cleaned.rpartition(".")
    if not dot or not stem or len(ext) > _MAX_EXTENSION_CHARS:
        stem, ext = cleaned, ""
    suffix = f".{ext}" if ext else ""
    stem = _clip_utf8(stem, MAX_NAME_BYTES - len(suffix.encode("utf-8"))).rstrip(" .")
    result = f"{stem}{suffix}" if stem else f"file{suffix}"
    if result.lower().endswith(RESERVED_SUFFIXES):
        result += "_"
    return result


def split_name(name: str) -> tuple[str, str]:
    """``("report", ".csv")`` for ``report.csv``; names without a dot have no suffix."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    return stem, f".{ext}"


def inside(root: Path, path: Path) -> bool:
    """True when ``path`` (resolved without following its last component) is under ``root``."""
    parent = path.parent.resolve()
    return parent == root.resolve() or root.resolve() in parent.parents


_move_lock = threading.Lock()


def move_unique(source: Path, target_dir: Path, name: str) -> Path:
    """Move ``source`` into ``target_dir`` as ``name`` (or ``name-N``); return the new path.

    ``name`` must come from :func:`safe_name`. The name check and the rename happen under one
    lock, so two threads of the watcher can never pick the same free name.
    """
    if os.sep in name or name in ("", ".", ".."):
        raise ValueError(f"not a plain file name: {name!r}")
    stem, suffix = split_name(name)
    with _move_lock:
        candidate = target_dir / name
        counter = 1
        while os.path.lexists(candidate):
            counter += 1
            candidate = target_dir / f"{stem}-{counter}{suffix}"
        os.rename(source, candidate)
    return candidate


def one_line(message: str, limit: int = 500) -> str:
    """A message squeezed onto one line (error files are read by people and by scripts)."""
    text = " ".join(display_name(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Observation:
    """What a scan saw of one file: its size, its mtime and when (by the watcher's clock)."""

    size: int
    mtime_ns: int
    since: float


class SettleTracker:
    """Decides when a file in the inbox has fully arrived.

    A file has arrived when its inode changed after its content last did (``ctime`` later than
    ``mtime``: it was renamed or moved in whole after the writer finished, which is how careful
    uploaders deliver), or when its size and mtime stayed the same for ``settle_seconds`` of
    the injected clock (a slow copy straight into the inbox). The clock is a parameter so tests
    advance time explicitly instead of sleeping.
    """

    def __init__(self, settle_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.settle_seconds = settle_seconds
        self.clock = clock
        self._seen: dict[str, Observation] = {}

    def arrived(self, name: str, st: os.stat_result) -> bool:
        """Record this sighting of ``name``; True when the file can be taken."""
        now = self.clock()
        previous = self._seen.get(name)
        if previous is None or (previous.size, previous.mtime_ns) != (st.st_size, st.st_mtime_ns):
            self._seen[name] = Observation(st.st_size, st.st_mtime_ns, now)
            previous = None
        if st.st_ctime_ns > st.st_mtime_ns:
            return True
        return previous is not None and now - previous.since >= self.settle_seconds

    def forget(self, name: str) -> None:
        """Drop what is known of ``name`` (taken, or gone from the inbox)."""
        self._seen.pop(name, None)

    def keep_only(self, names: set[str]) -> None:
        """Forget every file not in ``names`` (deleted or renamed away since the last scan)."""
        for name in set(self._seen) - names:
            del self._seen[name]


def inbox_entries(inbox: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Each non-temporary entry of the inbox with its ``lstat`` (links are not followed)."""
    with os.scandir(inbox) as entries:
        for entry in entries:
            if is_temporary(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield entry.name, st


def is_regular(st: os.stat_result) -> bool:
    """True for a plain file (not a link, directory, pipe or device)."""
    return stat.S_ISREG(st.st_mode)


@dataclass(slots=True)
class Sidecar:
    """``processing/<name>.batch``: which batch a file in processing belongs to.

    Written before any row is enqueued, so a restarted watcher continues that batch instead
    of opening a second one for the same file.
    """

    batch_id: str
    sha256: str
    original: str

    @staticmethod
    def path_for(input_path: Path) -> Path:
        """The sidecar's path next to an input in ``processing/``."""
        return input_path.with_name(input_path.name + SIDECAR_SUFFIX)

    def save(self, input_path: Path) -> None:
        """Write the sidecar atomically."""
        data = {"batch_id": self.batch_id, "sha256": self.sha256, "original": self.original}
        atomic_write_text(self.path_for(input_path), json.dumps(data) + "\n")

    @classmethod
    def load(cls, input_path: Path) -> Sidecar | None:
        """The sidecar of an input, or None when there is none (or it is unreadable)."""
        try:
            data = json.loads(cls.path_for(input_path).read_text(encoding="utf-8"))
            return cls(str(data["batch_id"]), str(data["sha256"]), str(data["original"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


class StateFile:
    """The sha256 → batch map of a drop folder (a small JSON file, rewritten atomically).

    Kept in the folder rather than in Redis so duplicate detection survives a Redis flush or
    the batch TTL, and moves with the folder. Entries older than ``keep_seconds`` are dropped
    when the file is next written, so it stays small.
    """

    def __init__(self, path: Path, *, keep_seconds: float, wall: Callable[[], float] = time.time):
        self.path = path
        self.keep_seconds = keep_seconds
        self.wall = wall
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        """Entries from disk; a missing file is an empty map, an unreadable one an error."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise DropFolderError(f"{self.path}: state file cannot be read ({exc})") from None
        files = data.get("files", {}) if isinstance(data, dict) else {}
        return {k: dict(v) for k, v in files.items() if isinstance(v, dict)}

    def get(self, sha256: str) -> dict[str, Any] | None:
        """The entry for a content hash: ``batch_id``, ``name``, ``status``, ``at``."""
        with self._lock:
            entry = self._entries.get(sha256)
            return dict(entry) if entry is not None else None

    def put(self, sha256: str, **values: Any) -> None:
        """Create or update the entry of a content hash and write the file."""
        with self._lock:
            entry = self._entries.setdefault(sha256, {})
            entry.update(values)
            entry["at"] = self.wall()
            self._write()

    def remove(self, sha256: str, batch_id: str | None = None) -> None:
        """Forget a content hash (only if it still names ``batch_id``, when given)."""
        with self._lock:
            entry = self._entries.get(sha256)
            if entry is None or (batch_id is not None and entry.get("batch_id") != batch_id):
                return
            del self._entries[sha256]
            self._write()

    def _write(self) -> None:
        """Prune old entries and rewrite the file (caller holds the lock)."""
        horizon = self.wall() - self.keep_seconds
        self._entries = {
            k: v for k, v in self._entries.items() if float(v.get("at", 0)) >= horizon
        }
        payload: Mapping[str, Any] = {"version": 1, "files": self._entries}
        atomic_write_text(self.path, json.dumps(payload, indent=1, sort_keys=True) + "\n")


class FolderLock:
    """An exclusive ``flock`` on the folder's lock file: one watcher per drop folder.

    The kernel drops the lock when the process dies, however it dies, so a crashed watcher
    never blocks its successor.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`DropFolderError` naming the folder."""
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise DropFolderError(
                f"{self.path.parent}: another watcher is already running on this folder"
            ) from None
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (closing the descriptor releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
