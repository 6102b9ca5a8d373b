"""``onboard rerun`` and ``onboard report --merged``: a new batch of some rows of an earlier one.

A rerun takes its rows from a batch id (while the batch lives in the store: the parent's
input file is read again, checked against its sha256) or from a report file (always: the
report carries the input columns; its outcome columns are not canonical columns, so ingest
leaves them out of what is sent, and the report's ``ecrn`` is the input's own ecrn for every
row that was not onboarded). Only rows whose outcome is selected go into the new batch, under
their original row numbers, so reruns fold back into the parent row for row. The rerun batch
remembers which rows of its input are its own (the *selection* in the store); its report lists
those rows only.

Customers already ``onboarded``/``already_exists`` are answered by the ledger in the worker,
without a partner call, whatever the selection says.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pipeline.batch.inputs import InputSpec, input_spec, iter_chunks, new_batch_id, open_input
from pipeline.batch.submit import Queue, Submission, launch_batch
from pipeline.core.errors import UserError, file_error
from pipeline.core.followup import FOLLOW_UP_COLUMNS, CustomerStatus
from pipeline.core.merge import chain_order, fold
from pipeline.core.outcomes import Outcome
from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from workers.state import BatchStore, RowRecord

DEFAULT_OUTCOMES = (Outcome.FAILED,)
# Columns a report adds to the input's; the selection reads two of them.
ROW_NUMBER_COLUMN = "row_number"
OUTCOME_COLUMN = "outcome"


def parse_outcomes(text: str | Sequence[str] | None) -> frozenset[Outcome]:
    """``failed,rejected`` → the outcomes; an unknown name is a one-line UserError."""
    if text is None:
        return frozenset(DEFAULT_OUTCOMES)
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    names = [p.strip().lower() for p in parts if p.strip()]
    known = {o.value: o for o in Outcome}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise UserError(
            f"--outcome: unknown outcome {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(known)}"
        )
    return frozenset(known[n] for n in names)


def _column(headers: Sequence[str], name: str) -> int | None:
    for i, header in enumerate(headers):
        if header.strip().lower() == name:
            return i
    return None


def selection_from_report(
    path: Path, outcomes: frozenset[Outcome], settings: Settings, column_map: Path | None
) -> dict[int, int]:
    """Report row → original row number for the report's rows with a selected outcome."""
    wanted = {o.value for o in outcomes}
    select: dict[int, int] = {}
    try:
        table = open_input(InputSpec(path.resolve(), None, column_map), settings)
        headers = table.info.headers
        number_at = _column(headers, ROW_NUMBER_COLUMN)
        outcome_at = _column(headers, OUTCOME_COLUMN)
        if number_at is None or outcome_at is None:
            raise UserError(
                f"{path}: not a report (no {ROW_NUMBER_COLUMN} and {OUTCOME_COLUMN} columns)"
            )
        for chunk in iter_chunks(table):
            lines = chunk.row_numbers.tolist()
            numbers = chunk.raw.iloc[:, number_at].tolist()
            results = chunk.raw.iloc[:, outcome_at].tolist()
            for line, number, outcome in zip(lines, numbers, results, strict=True):
                if str(outcome).strip().lower() not in wanted:
                    continue
                try:
                    select[int(line)] = int(str(number).strip())
                except ValueError:
                    raise UserError(
                        f"{path}: row {line}, column {headers[number_at]}: "
                        "not a row number; restore it from the original report"
                    ) from None
    except OSError as exc:
        raise file_error(exc, path) from None
    return select


def selection_from_batch(
    store: BatchStore, batch_id: str, outcomes: frozenset[Outcome]
) -> dict[int, int]:
    """Input row → row number for the batch's rows with a selected outcome.

    A batch that is itself a rerun reads its rows from its own input through its selection.
    """
    rows = {rec.row_number for rec in store.iter_rows(batch_id) if rec.outcome in outcomes}
    own = store.selection(batch_id)
    if own is None:
        return {n: n for n in rows}
    return {line: number for line, number in own.items() if number in rows}


def find_reruns(store: BatchStore, parent: str) -> list[str]:
    """Reruns of ``parent`` (and reruns of those) among the recent batches, in fold order."""
    metas = store.recent_meta("parent_batch_id", "created_at")
    return chain_order(parent, metas)


@dataclass(slots=True)
class ReportPart:
    """One chunk's share of a report: its raw input rows, numbers, records, extra columns."""

    raw: Any
    numbers: list[int]
    given_ecrn: list[str]
    records: list[RowRecord | None]
    extra: dict[str, list[str]] = field(default_factory=dict)


class ReportRows:
    """Which rows of its input a batch's report holds, and the records to print for them.

    A rerun batch holds its selected rows only; with ``merge`` (rerun batch ids in fold
    order) each row's records are folded; a batch that was followed up adds the two status
    columns. ``complete`` is False while any merged rerun still runs.
    """

    def __init__(self, store: BatchStore, batch_id: str, merge: Sequence[str] = ()) -> None:

        self.store = store
        self.batch_id = batch_id
        self.merge = list(merge)
        self.batches = [batch_id, *self.merge]
        self.selected = store.has_selection(batch_id)
        states = [store.batch_state(b) for b in self.merge]
        self.complete = all(s is not None and s.complete for s in states)
        self.followed_up = any(
            store.meta_fields(b, "followed_up")[0] for b in self.batches
        )
        self.extra_columns: tuple[str, ...] = FOLLOW_UP_COLUMNS if self.followed_up else ()

    def part(self, raw: Any, numbers: list[int], given_ecrn: list[str]) -> ReportPart:
        """The report's rows of one input chunk."""
        store = self.store
        if self.selected:
            mapped = store.selected(self.batch_id, numbers)
            keep = [i for i, m in enumerate(mapped) if m is not None]
            raw = raw.iloc[keep]
            numbers = [cast(int, mapped[i]) for i in keep]
            given_ecrn = [given_ecrn[i] for i in keep]
        records = store.get_rows(self.batch_id, numbers)
        if self.merge:
            records = fold([records, *(store.get_rows(b, numbers) for b in self.merge)])
        part = ReportPart(raw, numbers, given_ecrn, records)
        if self.followed_up:
            latest = latest_statuses(store, self.batches, numbers)
            part.extra = {
                "customer_status": [s.customer_status if s else "" for s in latest],
                "aml_scan_status": [s.aml_scan_status if s else "" for s in latest],
            }
        return part


def latest_statuses(
    store: BatchStore, batches: Iterable[str], numbers: list[int]
) -> list[CustomerStatus | None]:
    """Per row, the status kept by the last of ``batches`` that has one."""
    latest: list[CustomerStatus | None] = [None] * len(numbers)
    if not numbers:
        return latest
    for batch_id in batches:
        for i, status in enumerate(store.statuses_of(batch_id, numbers)):
            if status is not None:
                latest[i] = status
    return latest


@dataclass(frozen=True, slots=True)
class RerunSource:
    """What a rerun sends: the input to read, which of its rows (input row → row number),
    and the batch they come from ("" when a report names none)."""

    spec: InputSpec
    select: dict[int, int]
    parent: str


def rerun_source(
    source: str, store: BatchStore, outcomes: frozenset[Outcome], settings: Settings, *,
    column_map: Path | None = None, master_data_dir: Path | None = None,
    parent: str | None = None,
) -> RerunSource:
    """The rows of ``source`` (a report file, or a batch id while it lives in the store)
    whose outcome is among ``outcomes``."""
    as_path = Path(source)
    if as_path.is_file():
        select = selection_from_report(as_path, outcomes, settings, column_map)
        up = parent if parent is not None else _report_batch(as_path)
        return RerunSource(InputSpec(as_path, None, column_map, master_data_dir), select, up)
    state = store.batch_state(source)
    if state is None:
        raise UserError(
            f"{source}: neither a report file nor a known batch (batches expire after "
            f"{settings.pipeline.state_ttl_seconds // 86400} days; rerun from the report file)"
        )
    spec = input_spec(state)
    if not spec.path.is_file():
        raise UserError(
            f"{spec.path}: batch {source}'s input file is gone; rerun from its report file"
        )
    spec = replace(
        spec, column_map=column_map or spec.column_map,
        master_data_dir=master_data_dir or spec.master_data_dir,
    )
    return RerunSource(spec, selection_from_batch(store, source, outcomes), source)


def launch_rerun(queue: Queue, source: RerunSource, outcomes: frozenset[Outcome]) -> Submission:
    """Enqueue the selected rows as a new batch that remembers its selection."""
    batch_id = new_batch_id()
    queue.store.save_selection(batch_id, source.select)
    sub = launch_batch(
        source.spec, queue, batch_id=batch_id, select=source.select,
        parent_batch_id=source.parent,
    )
    queue.store.update_meta(batch_id, rerun_outcomes=outcome_names(outcomes))
    return sub


def outcome_names(outcomes: frozenset[Outcome]) -> str:
    """The outcomes as the rerun command takes them: sorted, comma separated."""
    return ",".join(sorted(o.value for o in outcomes))


def _report_batch(path: Path) -> str:
    """The batch a report belongs to, from the summary.json written beside it (or "")."""
    try:
        data = json.loads((path.parent / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(data.get("batch_id") or "") if isinstance(data, dict) else ""
