"""Run every local rule over a chunk of rows: per-row errors plus the normalised values.

Rules are evaluated column-wise (see :mod:`pipeline.rules.checks`); each yields a mask of failing
rows, and only rows that fail something are turned into :class:`RowError` lists, so a clean
chunk costs vectorised passes only. Errors of a row come in canonical column order, the
reader's own errors (``chunk.read_errors``) merged in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from pipeline.core.masterdata import MasterData
from pipeline.core.outcomes import RowError
from pipeline.core.settings import ValidationSettings
from pipeline.ingest.schema import BOOLEAN_COLUMNS, CANONICAL_COLUMNS, DATE_COLUMNS, FILE_COLUMNS
from pipeline.rules import columns
from pipeline.rules.checks import (
    CODE_COLUMNS,
    EMIRATES_ID,
    MAX_LENGTHS,
    PASSPORT,
    Code,
    age_cutoff,
    boolean_values,
    emirates_id_problems,
    label,
    parse_dates,
    passport_problems,
    resolve_codes,
)
from pipeline.rules.documents import DocumentChecker
from pipeline.rules.duplicates import DuplicateTracker
from pipeline.rules.emails import EmailNormaliser
from pipeline.rules.phones import PhoneNormaliser

PHONE_COLUMNS = ("primary_mobile_number", "secondary_mobile_number")
EMAIL_COLUMNS = ("email_id",)
_RANK = {name: rank for rank, name in enumerate(CANONICAL_COLUMNS)}


class ChunkLike(Protocol):
    """What validation needs of an ingest chunk (``pipeline.ingest.table.Chunk`` has it)."""

    @property
    def rows(self) -> pd.DataFrame:
        """Canonical columns of trimmed strings, "" when empty."""

    @property
    def row_numbers(self) -> pd.Series:
        """The row number the user sees, aligned with ``rows``."""

    @property
    def read_errors(self) -> dict[int, list[RowError]]:
        """Problems the reader found, keyed by row number."""


@dataclass(slots=True)
class ChunkResult:
    """Errors of the failing rows (keyed by row number) and the normalised chunk."""

    errors: dict[int, list[RowError]]
    normalised: pd.DataFrame


@dataclass(slots=True)
class _Finding:
    """One rule's failures in one column: positions and a shared or per-row message."""

    column: str
    code: str
    positions: np.ndarray
    message: str | list[str]


class _Present(dict[str, np.ndarray]):
    """Non-empty masks of the columns, computed the first time a rule asks for one."""

    def __init__(self, cols: dict[str, pd.Series]) -> None:
        super().__init__()
        self._cols = cols

    def __missing__(self, name: str) -> np.ndarray:
        mask = self[name] = columns.nonempty(self._cols[name])
        return mask


class _Collector:
    """Gathers the findings of one chunk and which rows already failed each column."""

    def __init__(self) -> None:
        self.findings: list[_Finding] = []
        self.failed: dict[str, np.ndarray] = {}

    def add(self, column: str, code: str, mask: np.ndarray, message: str | list[str]) -> None:
        """Record the rows of ``mask`` as failing ``code`` on ``column``.

        A per-row ``message`` list is aligned with the True positions of ``mask``.
        """
        positions = np.flatnonzero(mask)
        if len(positions) == 0:
            return
        # Plain str, not the enum: errors travel through JSON, Celery and report files.
        self.findings.append(_Finding(column, str(code), positions, message))
        seen = self.failed.get(column)
        self.failed[column] = mask.copy() if seen is None else seen | mask


@dataclass(slots=True)
class _Pass:
    """What every rule group works on for one chunk: the input columns, the normalised
    columns it writes, which cells are filled, and the errors found so far."""

    cols: dict[str, pd.Series]
    out: dict[str, pd.Series]
    present: dict[str, np.ndarray]
    found: _Collector


class Validator:
    """All local rules, configured once per run; keeps the duplicate tracker across chunks."""

    def __init__(
        self,
        master_data: MasterData,
        settings: ValidationSettings,
        *,
        base_dir: Path,
        today: date,
    ) -> None:
        self.master_data = master_data
        self.settings = settings
        self.today = today
        self._today64 = np.datetime64(today, "D")
        self._adult_cutoff = age_cutoff(today, settings.min_age_years)
        self._phones = PhoneNormaliser()
        self._emails = EmailNormaliser()
        self._documents = DocumentChecker(base_dir, settings.max_document_bytes)
        self._duplicates = DuplicateTracker()

    @property
    def phone_library_calls(self) -> int:
        """How many phone numbers the fast path left to phonenumbers (for benchmarks)."""
        return self._phones.library_calls

    @property
    def email_library_calls(self) -> int:
        """How many addresses the fast path left to email-validator (for benchmarks)."""
        return self._emails.library_calls

    def validate_chunk(self, chunk: ChunkLike) -> ChunkResult:
        """Validate one chunk; duplicates are looked for across all chunks seen so far."""
        return self._validate(chunk.rows, chunk.row_numbers, chunk.read_errors, duplicates=True)

    def validate_row(self, row: Mapping[str, str], row_number: int = 2) -> list[RowError]:
        """Errors of one row on its own (no duplicate tracking); handy for tests and tools."""
        rows = pd.DataFrame({k: [str(v).strip()] for k, v in row.items()}, dtype="str")
        numbers = pd.Series([row_number], dtype="int64")
        result = self._validate(rows, numbers, {}, duplicates=False)
        return result.errors.get(row_number, [])

    def _validate(
        self,
        rows: pd.DataFrame,
        row_numbers: pd.Series,
        read_errors: dict[int, list[RowError]],
        *,
        duplicates: bool,
    ) -> ChunkResult:
        """Run every rule over ``rows`` and assemble errors and normalised values."""
        index = rows.index
        n = len(rows)
        empty = pd.Series([""] * n, dtype="str")
        renumber = not index.equals(pd.RangeIndex(n))
        cols: dict[str, pd.Series] = {}
        for name in CANONICAL_COLUMNS:
            if name in rows.columns:
                col = rows[name].reset_index(drop=True) if renumber else rows[name]
                cols[name] = col if col.dtype == "str" else col.fillna("").astype("str")
            else:
                cols[name] = empty
        out = dict(cols)
        present = _Present(cols)
        found = _Collector()
        for name in self.settings.mandatory_columns:
            if name in cols:
                found.add(name, Code.REQUIRED, ~present[name], f"{label(name)} is required")
        rules = _Pass(cols, out, present, found)
        for rule in (
            self._codes, self._dates, self._booleans, self._contacts, self._ids, self._files,
            self._lengths,
        ):
            rule(rules)
        numbers = np.asarray(row_numbers, dtype=np.int64)
        if duplicates:
            self._duplicate_ids(rules, numbers)
        normalised = pd.DataFrame(out, copy=False)
        normalised.index = index
        errors = _assemble(found.findings, numbers, read_errors)
        return ChunkResult(errors=errors, normalised=normalised)

    # -- rule groups -------------------------------------------------------------------------

    def _codes(self, p: _Pass) -> None:
        """Master-data columns resolve to canonical codes (case, labels and aliases too)."""
        for column, list_name in CODE_COLUMNS.items():
            if not p.present[column].any():
                continue
            normal, unknown = resolve_codes(p.cols[column], self.master_data[list_name])
            p.out[column] = normal
            if unknown.any():
                # Codes are not personal data, so the clerk sees what was typed (clipped).
                shown = p.cols[column].to_numpy(dtype=object)[unknown]
                what = label(column)
                messages = [f"{what} '{_clip(v)}' is not in the {list_name} list" for v in shown]
                p.found.add(column, Code.UNKNOWN_CODE, unknown, messages)

    def _dates(self, p: _Pass) -> None:
        """Dates parse; birth in the past and old enough; ID expiry after issue, not past."""
        expected = "YYYY-MM-DD" + (" or DD/MM/YYYY" if self.settings.day_first_dates else "")
        parsed: dict[str, np.ndarray] = {}
        for column in DATE_COLUMNS:
            if not p.present[column].any():
                parsed[column] = np.full(len(p.cols[column]), np.datetime64("NaT"), "datetime64[D]")
                continue
            days, text = parse_dates(p.cols[column], day_first=self.settings.day_first_dates)
            parsed[column] = days
            p.out[column] = text
            bad = p.present[column] & np.isnat(days)
            message = f"{label(column)} is not a real date in the form {expected}"
            p.found.add(column, Code.BAD_DATE, bad, message)
        born = parsed["date_of_birth"]
        future = born > self._today64
        p.found.add("date_of_birth", Code.FUTURE_DATE, future, "date of birth is in the future")
        young = ~future & (born > self._adult_cutoff)
        too_young = f"customer must be at least {self.settings.min_age_years} years old"
        p.found.add("date_of_birth", Code.TOO_YOUNG, young, too_young)
        issued = parsed["id_issued_on"]
        future_issue = issued > self._today64
        p.found.add("id_issued_on", Code.FUTURE_DATE, future_issue, "issue date is in the future")
        expiry = parsed["id_date_of_expiry"]
        before = expiry <= issued
        message = "expiry date is not after the issue date"
        p.found.add("id_date_of_expiry", Code.EXPIRY_BEFORE_ISSUE, before, message)
        expired = ~before & (expiry < self._today64)
        p.found.add("id_date_of_expiry", Code.EXPIRED, expired, "the ID document has expired")

    def _booleans(self, p: _Pass) -> None:
        """Yes/no columns become "true"/"false"."""
        for column in BOOLEAN_COLUMNS:
            if not p.present[column].any():
                continue
            p.out[column], bad = boolean_values(p.cols[column])
            message = f"{label(column)} must be yes or no (Y/N, true/false, 1/0)"
            p.found.add(column, Code.BAD_BOOLEAN, bad, message)

    def _contacts(self, p: _Pass) -> None:
        """Phones to E.164 (residence country as default region); e-mails normalised."""
        regions = p.out["country_of_residence"]
        for column in PHONE_COLUMNS:
            where = np.flatnonzero(p.present[column])
            if len(where) == 0:
                continue
            e164, ok = self._phones.normalise(_rows(p.cols[column], where), _rows(regions, where))
            p.out[column] = columns.scatter(p.cols[column], [(where, e164)])
            bad = np.zeros(len(p.cols[column]), dtype=bool)
            bad[where[~ok]] = True
            p.found.add(
                column,
                Code.BAD_PHONE,
                bad,
                f"{label(column)} is not a valid phone number (write +<country code><number>, "
                "or a national number of the country of residence)",
            )
        for column in EMAIL_COLUMNS:
            where = np.flatnonzero(p.present[column])
            if len(where) == 0:
                continue
            normal, ok = self._emails.normalise(_rows(p.cols[column], where))
            p.out[column] = columns.scatter(p.cols[column], [(where, normal)])
            bad = np.zeros(len(p.cols[column]), dtype=bool)
            bad[where[~ok]] = True
            p.found.add(column, Code.BAD_EMAIL, bad, f"{label(column)} is not valid")

    def _ids(self, p: _Pass) -> None:
        """ID numbers follow the format of their ID type (Emirates ID, passport)."""
        id_type = p.out["id_type"]
        number = p.cols["id_number"]
        pieces: list[tuple[np.ndarray, pd.Series]] = []
        checks = (
            (EMIRATES_ID, lambda s: emirates_id_problems(s, self.today.year)),
            (PASSPORT, passport_problems),
        )
        for type_code, check in checks:
            rows = np.flatnonzero((id_type == type_code).to_numpy() & p.present["id_number"])
            if len(rows) == 0:
                continue
            subset = _rows(number, rows)
            normal, problems = check(subset)
            if normal is not subset:
                pieces.append((rows, normal))
            taken = np.zeros(len(rows), dtype=bool)
            for mask, message in problems:
                first = mask & ~taken
                taken |= mask
                bad = np.zeros(len(number), dtype=bool)
                bad[rows[first]] = True
                p.found.add("id_number", Code.BAD_ID, bad, message)
        p.out["id_number"] = columns.scatter(number, pieces)

    def _files(self, p: _Pass) -> None:
        """Document files exist inside the input folder, are JPEG/PNG/PDF, not too big."""
        for column in FILE_COLUMNS:
            where = np.flatnonzero(p.present[column])
            if len(where) == 0:
                continue
            by_code: dict[str, tuple[list[int], list[str]]] = {}
            for pos, rel in zip(where.tolist(), p.cols[column].iloc[where].tolist(), strict=True):
                problem = self._documents.check(rel)
                if problem is not None:
                    positions, messages = by_code.setdefault(problem[0], ([], []))
                    positions.append(pos)
                    messages.append(problem[1])
            for code, (positions, messages) in by_code.items():
                mask = np.zeros(len(p.cols[column]), dtype=bool)
                mask[positions] = True
                p.found.add(column, code, mask, messages)

    def _lengths(self, p: _Pass) -> None:
        """Values we would send fit the partner's limits (only where nothing else failed)."""
        for column, limit in MAX_LENGTHS.items():
            if not p.present[column].any():
                continue
            long = (p.out[column].str.len() > limit).to_numpy(dtype=bool, na_value=False)
            earlier = p.found.failed.get(column)
            if earlier is not None:
                long = long & ~earlier
            message = f"{label(column)} is longer than {limit} characters"
            p.found.add(column, Code.TOO_LONG, long, message)

    def _duplicate_ids(self, p: _Pass, numbers: np.ndarray) -> None:
        """A (type, number) pair seen on an earlier row of the file marks this row."""
        rows = np.flatnonzero(p.present["id_type"] & p.present["id_number"])
        if len(rows) == 0:
            return
        first = self._duplicates.first_rows_of_ids(
            _rows(p.out["id_type"], rows), _rows(p.out["id_number"], rows), numbers[rows]
        )
        dup = first != 0
        if dup.any():
            mask = np.zeros(len(numbers), dtype=bool)
            mask[rows[dup]] = True
            messages = [f"same ID as row {r}" for r in first[dup].tolist()]
            p.found.add("id_number", Code.DUPLICATE_IN_FILE, mask, messages)


def _rows(values: pd.Series, where: np.ndarray) -> pd.Series:
    """The rows ``where`` of a column (the column itself when that is every row)."""
    return values if len(where) == len(values) else values.iloc[where]


def _clip(value: str, limit: int = 20) -> str:
    """A value shortened for a message."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _assemble(
    findings: list[_Finding], numbers: np.ndarray, read_errors: dict[int, list[RowError]]
) -> dict[int, list[RowError]]:
    """Per-row error lists in column order, the reader's errors merged in.

    Where the reader already flagged a column of a row (say an ID Excel turned into a number),
    the rules' errors on that column are dropped: the reader's message names the real cause.
    """
    ordered = sorted(findings, key=lambda f: _RANK.get(f.column, len(_RANK)))
    by_pos: dict[int, list[RowError]] = {}
    for finding in ordered:
        positions = finding.positions.tolist()
        if isinstance(finding.message, str):
            # Immutable, so one object serves every row with this finding.
            shared = RowError(finding.code, finding.column, finding.message)
            for pos in positions:
                by_pos.setdefault(pos, []).append(shared)
        else:
            for pos, message in zip(positions, finding.message, strict=True):
                by_pos.setdefault(pos, []).append(RowError(finding.code, finding.column, message))
    errors = {int(numbers[pos]): row for pos, row in by_pos.items()}
    if read_errors:
        wanted = set(numbers.tolist())
        for number, extra in read_errors.items():
            if number not in wanted or not extra:
                continue
            flagged = {e.field for e in extra}
            mine = [e for e in errors.get(number, []) if e.field not in flagged]
            merged = sorted([*extra, *mine], key=lambda e: _RANK.get(e.field, len(_RANK)))
            errors[number] = merged
    return errors
