"""The closed set of row outcomes and the error and result records every row ends with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    """What finally happened to one input row; exactly one per row."""

    ONBOARDED = "onboarded"
    ALREADY_EXISTS = "already_exists"
    INVALID = "invalid"
    REJECTED = "rejected"
    NOT_SUBSCRIBED = "not_subscribed"
    FAILED = "failed"

    @property
    def is_done(self) -> bool:
        """True when the customer is on the platform and a rerun must never send it again."""
        return self in (Outcome.ONBOARDED, Outcome.ALREADY_EXISTS)


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem with a row: a stable machine code, the column, and a clerk-readable message."""

    code: str
    field: str
    message: str


@dataclass(slots=True)
class RowResult:
    """The final word on one row, as the report shows it."""

    row_number: int
    outcome: Outcome
    ecrn: str = ""
    errors: list[RowError] = field(default_factory=list)
    attempts: int = 0


ERROR_SEPARATOR = " | "
"""Joins several errors of one row, in the order they were found: one convention for every
report, whether the errors came from the local rules or from a worker."""


def join_errors(errors: Sequence[RowError]) -> tuple[str, str, str]:
    """The ``error_code``, ``error_field`` and ``error_message`` cells for one row's errors."""
    return (
        ERROR_SEPARATOR.join(e.code for e in errors),
        ERROR_SEPARATOR.join(e.field for e in errors),
        ERROR_SEPARATOR.join(e.message for e in errors),
    )
