"""The one result type every ``onboard`` command returns.

Commands never print or exit: they return a :class:`CommandResult`, so the CLI maps it to
output and an exit code in one place, and tests call the commands directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import ExitCode


@dataclass(slots=True)
class CommandResult:
    """Exit code; the summary (None when the command could not run); a one-line error (or
    note, e.g. "nothing to rerun"); the files written; the batch; plain lines to print."""

    exit_code: int
    summary: dict[str, Any] | None = None
    error: str | None = None
    reports: list[Path] = field(default_factory=list)
    batch_id: str | None = None
    lines: list[str] = field(default_factory=list)

    @classmethod
    def unusable(cls, message: str) -> CommandResult:
        """The result of a user mistake: exit code 2 and the one-line message."""
        return cls(ExitCode.UNUSABLE, error=message)
