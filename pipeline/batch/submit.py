"""Enqueue a batch: validate its file, record the invalid rows, send the valid ones.

Three ways in, one loop: :func:`launch_batch` opens a new batch (a rerun is one with a
selection), :func:`resume_batch` continues an enqueue that was cut short, and
:func:`recover_rows` sends again the rows of a fully enqueued batch that have no outcome.
The file streams through the same ingest and :class:`~pipeline.rules.validation.Validator`
as ``onboard validate``; each valid row's partner body is built here (document scans read
and base64-encoded here), so workers need nothing but Redis and the partner. Messages carry
``rows_per_message`` rows each and go out through one producer connection.

Completion is read from the store's counters: the batch is complete once the whole file has
been read (``total_rows`` set, then ``enqueue_done``) and every row has an outcome.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from pipeline.batch.inputs import InputSpec, new_batch_id, open_input
from pipeline.core.errors import InputError, UserError, file_error
from pipeline.core.masterdata import MasterData, load_master_data
from pipeline.core.outcomes import Outcome, join_errors
from pipeline.core.settings import Settings
from pipeline.ingest.schema import to_partner_body
from pipeline.rules.documents import DocumentEncoder
from pipeline.rules.stream import validated_chunks
from workers.state import BatchMeta, BatchStore, RowRecord
from workers.tasks import PROCESS_CHUNK, chunk_message

if TYPE_CHECKING:
    from celery import Celery

    from pipeline.ingest.table import Table
    from pipeline.rules.validation import ChunkResult

log = structlog.get_logger(__name__)

# -1 marks a row of the file that is not part of this sending.
_SKIP = -1


@dataclass(slots=True)
class Submission:
    """What a submit did: the batch and its row counts."""

    batch_id: str
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    messages: int = 0
    file_name: str = ""
    sha256: str = ""
    master_data_version: str = ""
    format: str = ""
    # Chunk ids are this plus the message number; a recovery uses its own so the per-chunk
    # delivery counters (poison detection) of the first sending are not added to.
    chunk_prefix: str = "c"


@dataclass(frozen=True, slots=True)
class Queue:
    """Where messages go and where the batch's state lives."""

    app: Celery
    store: BatchStore
    settings: Settings


@dataclass(frozen=True, slots=True)
class Rows:
    """Which rows of the file this sending covers.

    ``select`` (a rerun) maps the file's row numbers to the batch's: only those rows, under
    those numbers. ``recorded`` (a recovery) holds the batch row numbers that already have
    an outcome: they are not sent again. ``sent_before``: messages an earlier, cut-short
    enqueue already sent (numbered in file order, the same on every read of an unchanged
    file, so exactly those are skipped).
    """

    select: Mapping[int, int] | None = None
    recorded: Container[int] | None = None
    sent_before: int = 0

    @property
    def recovering(self) -> bool:
        """A recovery: the batch's meta, totals and enqueue cursor stay as they are."""
        return self.recorded is not None


def launch_batch(
    spec: InputSpec, queue: Queue, *, batch_id: str | None = None,
    select: Mapping[int, int] | None = None, parent_batch_id: str = "",
    today: date | None = None, on_chunk: Callable[[Submission], None] | None = None,
) -> Submission:
    """Open a new batch of ``spec``'s file (of its ``select``ed rows, for a rerun) and
    enqueue it.

    Raises :class:`~pipeline.core.errors.UserError` (one line) when the file, the column map
    or the master data cannot be used. A file found broken mid-way (a ragged line) leaves a
    batch whose meta says ``error``; the rows enqueued before it are still processed.
    """
    spec = spec.resolved()
    master, table = _open(spec, queue.settings)
    today = today or date.today()
    sub = _submission(batch_id or new_batch_id(), spec, master, table)
    queue.store.create_batch(BatchMeta(
        sub.batch_id, file_name=sub.file_name, sha256=sub.sha256,
        master_data_version=master.version, started_at=_now(), parent_batch_id=parent_batch_id,
    ))
    queue.store.update_meta(
        sub.batch_id, input_path=str(spec.path), sheet=table.info.sheet or "",
        column_map=str(spec.column_map or ""), master_data_dir=str(_rules_dir(spec, queue)),
        format=table.info.format, validated_on=today.isoformat(), documents_dir=str(spec.scans),
    )
    return _enqueue(spec, queue, master, table, sub, Rows(select=select), today, on_chunk)


def resume_batch(
    spec: InputSpec, queue: Queue, batch_id: str, *,
    on_chunk: Callable[[Submission], None] | None = None,
) -> Submission:
    """Continue the enqueue of ``batch_id`` that was cut short: the messages its cursor
    counts as sent are not sent again (the file must be unchanged; validation uses the
    batch's original date). A batch Redis no longer knows is launched afresh under its id.
    """
    if queue.store.get_meta(batch_id) is None:
        return launch_batch(spec, queue, batch_id=batch_id, on_chunk=on_chunk)
    spec = spec.resolved()
    master, table = _open(spec, queue.settings)
    _same_file(queue.store, batch_id, table, spec.path, "resume")
    sent, validated_on = queue.store.meta_fields(batch_id, "messages_enqueued", "validated_on")
    today = date.fromisoformat(validated_on) if validated_on else date.today()
    sub = _submission(batch_id, spec, master, table)
    rows = Rows(sent_before=int(sent or 0))
    return _enqueue(spec, queue, master, table, sub, rows, today, on_chunk)


def recover_rows(
    spec: InputSpec, queue: Queue, batch_id: str, *, recorded: Container[int],
    select: Mapping[int, int] | None = None,
) -> Submission:
    """Send again every row of the fully enqueued ``batch_id`` not in ``recorded``, in
    messages of their own; the batch's meta, totals and enqueue cursor stay as they are."""
    if queue.store.get_meta(batch_id) is None:
        raise UserError(f"batch {batch_id}: unknown (or expired) batch")
    spec = spec.resolved()
    master, table = _open(spec, queue.settings)
    _same_file(queue.store, batch_id, table, spec.path, "resume")
    _, validated_on = queue.store.meta_fields(batch_id, "messages_enqueued", "validated_on")
    today = date.fromisoformat(validated_on) if validated_on else date.today()
    sub = _submission(batch_id, spec, master, table, chunk_prefix=f"r{secrets.token_hex(3)}-")
    rows = Rows(select=select, recorded=recorded)
    return _enqueue(spec, queue, master, table, sub, rows, today, None)


def _rules_dir(spec: InputSpec, queue: Queue) -> Path:
    return spec.master_data_dir or queue.settings.validation.master_data_dir


def _open(spec: InputSpec, settings: Settings) -> tuple[MasterData, Table]:
    where = spec.master_data_dir or settings.validation.master_data_dir
    try:
        master = load_master_data(where)
    except OSError as exc:
        raise file_error(exc, where) from None
    return master, open_input(spec, settings)


def _same_file(store: BatchStore, batch_id: str, table: Table, path: Path, verb: str) -> None:
    meta = store.get_meta(batch_id)
    if meta is not None and meta.sha256 != table.info.sha256:
        raise UserError(f"{path}: changed since batch {batch_id} began; cannot {verb} it")


def _submission(
    batch_id: str, spec: InputSpec, master: MasterData, table: Table, *, chunk_prefix: str = "c"
) -> Submission:
    return Submission(
        batch_id=batch_id, file_name=spec.path.name, sha256=table.info.sha256,
        master_data_version=master.version, format=table.info.format, chunk_prefix=chunk_prefix,
    )


def _enqueue(
    spec: InputSpec, queue: Queue, master: MasterData, table: Table, sub: Submission,
    rows: Rows, today: date, on_chunk: Callable[[Submission], None] | None,
) -> Submission:
    """Stream the file through the rules and onto the queue; finish the batch's meta."""
    from pipeline.rules.validation import Validator

    store, settings = queue.store, queue.settings
    rules = settings.validation.model_copy(update={"master_data_dir": _rules_dir(spec, queue)})
    validator = Validator(master, rules, base_dir=spec.scans, today=today)
    documents = DocumentEncoder(spec.scans)
    log.info("batch.submit", batch_id=sub.batch_id, file=sub.file_name, format=sub.format)
    try:
        with queue.app.producer_or_acquire() as producer:
            for chunk, result in validated_chunks(table, validator):
                numbers, invalid, kept = _chunk_rows(chunk.row_numbers.tolist(), result, rows)
                store.record_outcomes(sub.batch_id, invalid)
                bad = {r.row_number for r in invalid} | {_SKIP}
                batch: list[dict[str, Any]] = []
                for number, row in _valid_rows(result.normalised, numbers, bad):
                    sub.valid += 1
                    batch.append({
                        "row_number": number, "id_type": row["id_type"],
                        "id_number": row["id_number"],
                        "body": to_partner_body(row, documents=documents.for_row(row)),
                    })
                    if len(batch) >= settings.pipeline.rows_per_message:
                        _publish(queue, producer, sub, batch, rows)
                        batch = []
                if batch:
                    _publish(queue, producer, sub, batch, rows)
                sub.rows += kept
                sub.invalid += len(invalid)
                if not rows.recovering:
                    store.set_enqueued(sub.batch_id, sub.rows)
                if on_chunk is not None:
                    on_chunk(sub)
    except (InputError, OSError, ValueError) as exc:
        message = _one_line(exc, spec.path)
        if rows.recovering:
            raise UserError(f"{message} (recovery of batch {sub.batch_id})") from None
        store.update_meta(sub.batch_id, error=message)
        raise UserError(f"{message} (batch {sub.batch_id} stopped after {sub.rows} rows)"
                        ) from None
    if rows.recovering:
        log.info("batch.recovered", batch_id=sub.batch_id, rows=sub.valid + sub.invalid,
                 messages=sub.messages)
        return sub
    store.set_total(sub.batch_id, sub.rows)
    store.update_meta(sub.batch_id, enqueue_done=1)
    log.info(
        "batch.enqueued", batch_id=sub.batch_id, rows=sub.rows, valid=sub.valid,
        invalid=sub.invalid, messages=sub.messages,
    )
    return sub


def _chunk_rows(
    lines: list[int], result: ChunkResult, rows: Rows
) -> tuple[list[int], list[RowRecord], int]:
    """The batch row number of each file row (``_SKIP`` for rows not sent now), the
    invalid rows to record, and how many of the chunk's rows belong to the batch."""
    invalid = [_invalid_record(n, errs) for n, errs in result.errors.items() if errs]
    numbers = lines
    kept = len(lines)
    if rows.select is not None:
        select = rows.select
        invalid = [replace(r, row_number=select[r.row_number])
                   for r in invalid if r.row_number in select]
        kept = sum(1 for n in lines if n in select)
        numbers = [select.get(n, _SKIP) for n in numbers]
    if rows.recorded is not None:
        recorded = rows.recorded
        invalid = [r for r in invalid if r.row_number not in recorded]
        numbers = [_SKIP if n in recorded else n for n in numbers]
    return numbers, invalid, kept


def _one_line(exc: BaseException, path: Path) -> str:
    if isinstance(exc, OSError):
        return f"{exc.filename or path}: {exc.strerror or exc}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _invalid_record(row_number: int, errors: Any) -> RowRecord:
    codes, fields, messages = join_errors(errors)
    return RowRecord(int(row_number), Outcome.INVALID, "", codes, fields, messages, 0)


ROW_SLICE = 2_000


def _valid_rows(
    normalised: Any, row_numbers: list[int], bad: set[int]
) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number, normalised row) of the rows that passed every rule, in input order.

    Column by column through Arrow (C loops), then one dict per row, ``ROW_SLICE`` rows at a
    time: pandas' ``to_dict("records")`` boxed every cell on its own and was the largest cost
    of a submit, and a whole chunk of row dicts at once pushed its peak memory over budget.
    """
    import pyarrow as pa

    keep = [i for i, n in enumerate(row_numbers) if n not in bad]
    if not keep:
        return
    names = [str(c) for c in normalised.columns]
    arrays = [pa.array(normalised[name], from_pandas=True) for name in names]
    for start in range(0, len(keep), ROW_SLICE):
        part = keep[start:start + ROW_SLICE]
        positions = pa.array(part, type=pa.int64())
        columns = []
        for array in arrays:
            values = array.take(positions).to_pylist()
            columns.append(["" if v is None else v for v in values] if None in values else values)
        for i, cells in zip(part, zip(*columns, strict=True), strict=True):
            yield row_numbers[i], dict(zip(names, cells, strict=True))


def _publish(
    queue: Queue, producer: Any, sub: Submission, batch: list[dict[str, Any]], rows: Rows
) -> None:
    chunk_id = f"{sub.chunk_prefix}{sub.messages}"
    if sub.messages >= rows.sent_before:
        queue.store.publish_counted(
            queue.app, producer, PROCESS_CHUNK, [chunk_message(sub.batch_id, chunk_id, batch)],
            batch_id=sub.batch_id, sent=None if rows.recovering else sub.messages + 1,
        )
    sub.messages += 1
