"""Open a batch, validate the file, record the invalid rows, enqueue the valid ones in chunks.

Shared by ``onboard run``/``onboard submit`` and the drop-folder watcher. The file streams
through the same ingest and :class:`~pipeline.rules.validation.Validator` as ``onboard validate``;
each valid row's partner body is built here (document scans read and base64-encoded here), so
workers need nothing but Redis and the partner. Messages carry ``rows_per_message`` rows
each and go out through one producer connection.

Completion is read from the store's counters: the batch is complete once the whole file has
been read (``total_rows`` set, then ``enqueue_done``) and every row has an outcome.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Container, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import filetype
import structlog

from pipeline.commands.validate import CHUNK_ROWS, UnusableInput
from pipeline.core.masterdata import MasterData, MasterDataError, load_master_data
from pipeline.core.outcomes import Outcome
from pipeline.core.settings import Settings
from pipeline.reports.writer import join_errors
from workers.state import BatchMeta, BatchState, BatchStore, RowRecord
from workers.tasks import PROCESS_CHUNK, chunk_message

if TYPE_CHECKING:
    from celery import Celery

    from pipeline.ingest.table import Chunk, Table
    from pipeline.rules.validation import ChunkResult

log = structlog.get_logger(__name__)

# Documents encoded once per path and kept for rows naming the same file; bounded.
_DOC_CACHE_LIMIT = 256


class SubmitError(UnusableInput):
    """The file, an option or a setting cannot be used; a one-line message."""


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
class InputSpec:
    """How to (re)open a batch's input exactly as submit read it."""

    path: Path
    sheet: str | None = None
    column_map: Path | None = None
    master_data_dir: Path | None = None


_ID_LETTERS = "abcdefghjkmnpqrstuvwxyz"


def new_batch_id() -> str:
    """A sortable, unique batch id: UTC minute plus six random letters.

    No run of six or more digits: the log masking processor hides such runs as possible ID
    or phone numbers, and a batch id must stay readable in the logs.
    """
    suffix = "".join(secrets.choice(_ID_LETTERS) for _ in range(6))
    return f"{datetime.now(UTC):%Y-%m-%d-%H%M}-{suffix}"


def open_input(spec: InputSpec, settings: Settings) -> Table:
    """Open the input as ingest does (required columns from the settings)."""
    from pipeline.ingest.schema import ColumnMap
    from pipeline.ingest.table import open_table

    mapping = ColumnMap.load(spec.column_map) if spec.column_map is not None else None
    return open_table(
        spec.path, sheet=spec.sheet, column_map=mapping,
        required=settings.validation.mandatory_columns,
    )


class _Documents:
    """Reads and base64-encodes the ID scans rows name (paths relative to the input)."""

    def __init__(self, base_dir: Path) -> None:
        self._base = base_dir
        self._cache: dict[str, dict[str, str]] = {}

    def encode(self, relative: str) -> dict[str, str]:
        cached = self._cache.get(relative)
        if cached is not None:
            return cached
        data = (self._base / relative).read_bytes()
        kind = filetype.guess(data[:262])
        encoded = {
            "base64_data": base64.b64encode(data).decode("ascii"),
            "content_type": kind.mime if kind is not None else "application/octet-stream",
        }
        if len(self._cache) >= _DOC_CACHE_LIMIT:
            self._cache.clear()
        self._cache[relative] = encoded
        return encoded

    def for_row(self, row: Mapping[str, str]) -> dict[str, dict[str, str]] | None:
        documents: dict[str, dict[str, str]] = {}
        for column, side in (("id_front_file", "id_front"), ("id_back_file", "id_back")):
            if relative := (row.get(column) or "").strip():
                documents[side] = self.encode(relative)
        return documents or None


def submit_file(
    path: Path,
    *,
    app: Celery,
    store: BatchStore,
    settings: Settings,
    column_map: Path | None = None,
    master_data_dir: Path | None = None,
    sheet: str | None = None,
    today: date | None = None,
    batch_id: str | None = None,
    on_chunk: Callable[[Submission], None] | None = None,
    select: Mapping[int, int] | None = None,
    parent_batch_id: str = "",
    resume: bool = False,
    documents_dir: Path | None = None,
    recorded: Container[int] | None = None,
) -> Submission:
    """Validate ``path``, open a batch, record invalid rows, enqueue the valid ones.

    ``select`` (a rerun) maps the file's row numbers to the batch's: only those rows belong
    to the batch, under those numbers. ``resume`` with the ``batch_id`` of a batch whose
    enqueue was cut short continues it: the messages its cursor counts as sent are not sent
    again (the file must be unchanged; validation uses the batch's original date).
    ``documents_dir`` is where the ID scans rows name are looked up (paths may not leave
    it); by default the input file's folder.

    ``recorded`` (a recovery, with the ``batch_id`` of a fully enqueued batch) holds the
    batch row numbers that already have an outcome: every other row is sent again, in
    messages of their own; the batch's meta, totals and enqueue cursor are left as they are.

    Raises :class:`SubmitError` (one line) when the file, the column map or the master data
    cannot be used. A file found broken mid-way (a ragged line) leaves a batch whose meta
    says ``error``; the rows enqueued before it are still processed.
    """
    from pipeline.ingest.schema import to_partner_body
    from pipeline.ingest.table import InputError
    from pipeline.rules.validation import Validator

    path = Path(path)
    spec = InputSpec(
        path.resolve(), sheet,
        column_map.resolve() if column_map is not None else None,
        master_data_dir.resolve() if master_data_dir is not None else None,
    )
    rules = settings.validation
    if master_data_dir is not None:
        rules = rules.model_copy(update={"master_data_dir": master_data_dir})
    try:
        master: MasterData = load_master_data(rules.master_data_dir)
        table = open_input(spec, settings)
    except (InputError, MasterDataError) as exc:
        raise SubmitError(str(exc)) from None
    except OSError as exc:
        raise SubmitError(f"{exc.filename or path}: {exc.strerror or exc}") from None
    info = table.info
    recovering = recorded is not None
    previous = store.get_meta(batch_id) if (resume or recovering) and batch_id else None
    if recovering and previous is None:
        raise SubmitError(f"batch {batch_id}: unknown (or expired) batch")
    sent_before = 0
    if previous is not None and batch_id:
        if previous.sha256 != info.sha256:
            raise SubmitError(f"{path}: changed since batch {batch_id} began; cannot resume it")
        sent, validated_on = store.meta_fields(batch_id, "messages_enqueued", "validated_on")
        sent_before = 0 if recovering else int(sent or 0)
        if validated_on and today is None:
            today = date.fromisoformat(validated_on)
    today = today or date.today()
    scans = documents_dir.resolve() if documents_dir is not None else spec.path.parent
    validator = Validator(master, rules, base_dir=scans, today=today)
    documents = _Documents(scans)
    sub = Submission(
        batch_id=batch_id or new_batch_id(), file_name=path.name, sha256=info.sha256,
        master_data_version=master.version, format=info.format,
        chunk_prefix=f"r{secrets.token_hex(3)}-" if recovering else "c",
    )
    if previous is None:
        store.create_batch(BatchMeta(
            sub.batch_id, file_name=path.name, sha256=info.sha256,
            master_data_version=master.version, started_at=_now(),
            parent_batch_id=parent_batch_id,
        ))
        store.update_meta(
            sub.batch_id, input_path=str(spec.path), sheet=info.sheet or "",
            column_map=str(spec.column_map or ""), master_data_dir=str(rules.master_data_dir),
            format=info.format, validated_on=today.isoformat(), documents_dir=str(scans),
        )
    per_message = settings.pipeline.rows_per_message
    log.info("batch.submit", batch_id=sub.batch_id, file=path.name, format=info.format)
    try:
        with (
            app.producer_or_acquire() as producer,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="submit-read") as pool,
        ):
            # The next chunk is read and validated in a helper thread (mostly Arrow code that
            # releases the GIL) while this one's bodies are built and published; one chunk
            # ahead at most, so memory stays flat.
            chunks = iter(table.chunks(CHUNK_ROWS))

            def read_next() -> tuple[Chunk, ChunkResult] | None:
                chunk = next(chunks, None)
                return None if chunk is None else (chunk, validator.validate_chunk(chunk))

            ahead: Future[tuple[Chunk, ChunkResult] | None] = pool.submit(read_next)
            while (item := ahead.result()) is not None:
                ahead = pool.submit(read_next)
                chunk, result = item
                invalid = [
                    _invalid_record(n, errs) for n, errs in result.errors.items() if errs
                ]
                numbers = keep = chunk.row_numbers.tolist()
                if select is not None:
                    # A rerun: only the selected rows, under their batch row numbers (-1
                    # marks the others, which _valid_rows then leaves out).
                    invalid = [replace(r, row_number=select[r.row_number])
                               for r in invalid if r.row_number in select]
                    keep = [n for n in numbers if n in select]
                    numbers = [select.get(n, -1) for n in numbers]
                if recorded is not None:
                    invalid = [r for r in invalid if r.row_number not in recorded]
                    numbers = [-1 if n in recorded else n for n in numbers]
                store.record_outcomes(sub.batch_id, invalid)
                bad = {r.row_number for r in invalid} | {-1}
                valid = 0
                batch: list[dict[str, Any]] = []
                for number, row in _valid_rows(result.normalised, numbers, bad):
                    valid += 1
                    batch.append({
                        "row_number": number,
                        "id_type": row["id_type"],
                        "id_number": row["id_number"],
                        "body": to_partner_body(row, documents=documents.for_row(row)),
                    })
                    if len(batch) >= per_message:
                        _publish(app, producer, sub, batch, store, sent_before, recovering)
                        batch = []
                if batch:
                    _publish(app, producer, sub, batch, store, sent_before, recovering)
                sub.rows += len(keep)
                sub.invalid += len(invalid)
                sub.valid += valid
                if not recovering:
                    store.set_enqueued(sub.batch_id, sub.rows)
                if on_chunk is not None:
                    on_chunk(sub)
    except (InputError, OSError, ValueError) as exc:
        message = _one_line(exc, path)
        if recovering:
            raise SubmitError(f"{message} (recovery of batch {sub.batch_id})") from None
        store.update_meta(sub.batch_id, error=message)
        raise SubmitError(f"{message} (batch {sub.batch_id} stopped after {sub.rows} rows)"
                          ) from None
    if recovering:
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
    time: pandas' ``to_dict("records")`` boxed every cell on its own and took half of a
    submit's time, and a whole chunk of row dicts at once cost 200 MB of peak memory.
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
    app: Celery, producer: Any, sub: Submission, rows: list[dict[str, Any]],
    store: BatchStore, sent_before: int, recovering: bool = False,
) -> None:
    chunk_id = f"{sub.chunk_prefix}{sub.messages}"
    # Messages are numbered in file order, the same on every read of an unchanged file, so a
    # resumed submit skips exactly those an earlier, killed one had sent.
    if sub.messages >= sent_before:
        store.publish_counted(
            app, producer, PROCESS_CHUNK, [chunk_message(sub.batch_id, chunk_id, rows)],
            batch_id=sub.batch_id, sent=None if recovering else sub.messages + 1,
        )
    sub.messages += 1


def input_spec(state: BatchState) -> InputSpec:
    """How the batch's input was opened, from its meta."""
    f = state.input
    return InputSpec(
        Path(f.get("input_path", "")),
        f.get("sheet") or None,
        Path(f["column_map"]) if f.get("column_map") else None,
        Path(f["master_data_dir"]) if f.get("master_data_dir") else None,
    )


def iter_chunks(table: Table) -> Iterator[Any]:
    """The table's chunks at the pipeline's chunk size (the report re-reads with this)."""
    return iter(table.chunks(CHUNK_ROWS))
