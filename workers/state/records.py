"""The values the store keeps, as Python objects: a row's outcome record, a ledger entry,
a batch's meta and its progress.

They live apart from the stores so that code that only reads or prints state (reports,
status) depends on plain dataclasses and their JSON form, not on a Redis client; the JSON
forms are compact because one record is written per row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from dataclasses import field as dc_field
from typing import Any

from pipeline.core.outcomes import Outcome, RowResult, join_errors

# Shared encoders: json.dumps with options builds a new encoder per call (twice per row).
_COMPACT = json.JSONEncoder(separators=(",", ":"))
_COMPACT_UTF8 = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class RowRecord:
    """The stored final word on one row, as the report prints it."""

    row_number: int
    outcome: Outcome
    ecrn: str = ""
    error_code: str = ""
    error_field: str = ""
    error_message: str = ""
    attempts: int = 0

    @classmethod
    def from_result(cls, result: RowResult) -> RowRecord:
        """Flatten a result; several errors are joined as every report joins them."""
        code, field_, message = join_errors(result.errors)
        return cls(
            row_number=result.row_number, outcome=result.outcome, ecrn=result.ecrn,
            error_code=code, error_field=field_, error_message=message,
            attempts=result.attempts,
        )

    def to_json(self) -> str:
        """Compact JSON without the row number (it is the hash field) and empty values."""
        data: dict[str, Any] = {"outcome": self.outcome.value}
        for name in ("ecrn", "error_code", "error_field", "error_message", "attempts"):
            value = getattr(self, name)
            if value:
                data[name] = value
        return _COMPACT_UTF8.encode(data)

    @classmethod
    def from_json(cls, row_number: int, raw: str | bytes) -> RowRecord:
        """Inverse of :meth:`to_json`."""
        data = json.loads(raw)
        return cls(
            row_number=row_number,
            outcome=Outcome(data["outcome"]),
            ecrn=data.get("ecrn", ""),
            error_code=data.get("error_code", ""),
            error_field=data.get("error_field", ""),
            error_message=data.get("error_message", ""),
            attempts=int(data.get("attempts", 0)),
        )


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A customer already on the platform: how it got there, its ecrn, and which batch."""

    outcome: Outcome
    ecrn: str
    batch_id: str

    def to_json(self) -> str:
        """Compact JSON form stored in the ledger key."""
        return _COMPACT.encode(
            {"outcome": self.outcome.value, "ecrn": self.ecrn, "batch": self.batch_id}
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> LedgerEntry:
        """Inverse of :meth:`to_json`."""
        data = json.loads(raw)
        return cls(Outcome(data["outcome"]), data.get("ecrn", ""), data.get("batch", ""))


@dataclass(slots=True)
class BatchMeta:
    """Descriptive fields of one batch. ``total_rows`` is 0 until the whole file has been
    read (submit streams it), so a batch is never complete before it is fully enqueued."""

    batch_id: str
    file_name: str = ""
    sha256: str = ""
    master_data_version: str = ""
    created_at: str = ""
    started_at: str = ""
    finished_at: str = ""
    total_rows: int = 0
    rows_enqueued: int = 0
    parent_batch_id: str = ""

    @classmethod
    def from_hash(cls, batch_id: str, raw: Mapping[Any, Any]) -> BatchMeta:
        """Build from an ``HGETALL`` answer; unknown fields are ignored."""
        decoded = {_text(k): _text(v) for k, v in raw.items()}
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in decoded.items() if k in known}
        values["batch_id"] = batch_id
        for name in ("total_rows", "rows_enqueued"):
            values[name] = int(values.get(name) or 0)
        return cls(**values)


@dataclass(slots=True)
class BatchState:
    """A batch's progress as the store's counters tell it."""

    batch_id: str
    meta: BatchMeta
    counts: dict[Outcome, int] = dc_field(default_factory=dict)
    done: int = 0
    enqueue_done: bool = False
    input: dict[str, str] = dc_field(default_factory=dict)

    @property
    def total(self) -> int:
        """Rows of the input (0 until the whole file has been read)."""
        return self.meta.total_rows

    @property
    def complete(self) -> bool:
        """Every row of the fully read input has an outcome."""
        return self.enqueue_done and self.done >= self.total


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
