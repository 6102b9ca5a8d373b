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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pipeline.commands.validate import UnusableInput
from pipeline.core.followup import FOLLOW_UP_COLUMNS, CustomerStatus
from pipeline.core.merge import chain_order, fold
from pipeline.core.outcomes import Outcome
from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from pipeline.commands.run import RunResult
    from workers.state import BatchStore, RowRecord

DEFAULT_OUTCOMES = (Outcome.FAILED,)
# Columns a report adds to the input's; the selection reads two of them.
ROW_NUMBER_COLUMN = "row_number"
OUTCOME_COLUMN = "outcome"
MERGED_NAME = "merged"
MERGED_SUMMARY = "merged.summary.json"


def parse_outcomes(text: str | Sequence[str] | None) -> frozenset[Outcome]:
    """``failed,rejected`` → the outcomes; an unknown name is a one-line UnusableInput."""
    if text is None:
        return frozenset(DEFAULT_OUTCOMES)
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    names = [p.strip().lower() for p in parts if p.strip()]
    known = {o.value: o for o in Outcome}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise UnusableInput(
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
    from pipeline.batch.submit import InputSpec, iter_chunks, open_input
    from pipeline.ingest.table import InputError

    wanted = {o.value for o in outcomes}
    select: dict[int, int] = {}
    try:
        table = open_input(InputSpec(path.resolve(), None, column_map), settings)
        headers = table.info.headers
        number_at = _column(headers, ROW_NUMBER_COLUMN)
        outcome_at = _column(headers, OUTCOME_COLUMN)
        if number_at is None or outcome_at is None:
            raise UnusableInput(
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
                    raise UnusableInput(
                        f"{path}: row {line}, column {headers[number_at]}: "
                        "not a row number; restore it from the original report"
                    ) from None
    except InputError as exc:
        raise UnusableInput(str(exc)) from None
    except OSError as exc:
        raise UnusableInput(f"{exc.filename or path}: {exc.strerror or exc}") from None
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
    from workers.state import RECENT_BATCHES_KEPT

    metas = store.recent_meta("parent_batch_id", "created_at", limit=RECENT_BATCHES_KEPT)
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


def _source(
    source: str, store: BatchStore, outcomes: frozenset[Outcome], settings: Settings,
    column_map: Path | None, master_data_dir: Path | None, parent: str | None,
) -> tuple[Path, dict[int, int], str, Path | None, Path | None, str | None]:
    """(input path, selection, parent id, column map, master data, sheet) of a rerun."""
    from pipeline.batch.submit import input_spec

    as_path = Path(source)
    if as_path.is_file():
        select = selection_from_report(as_path, outcomes, settings, column_map)
        up = parent if parent is not None else _report_batch(as_path)
        return as_path, select, up, column_map, master_data_dir, None
    state = store.batch_state(source)
    if state is None:
        raise UnusableInput(
            f"{source}: neither a report file nor a known batch (batches expire after "
            f"{settings.pipeline.state_ttl_seconds // 86400} days; rerun from the report file)"
        )
    spec = input_spec(state)
    if not spec.path.is_file():
        raise UnusableInput(
            f"{spec.path}: batch {source}'s input file is gone; rerun from its report file"
        )
    select = selection_from_batch(store, source, outcomes)
    return (
        spec.path, select, source, column_map or spec.column_map,
        master_data_dir or spec.master_data_dir, spec.sheet,
    )


def _report_batch(path: Path) -> str:
    """The batch a report belongs to, from the summary.json written beside it (or "")."""
    try:
        data = json.loads((path.parent / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(data.get("batch_id") or "") if isinstance(data, dict) else ""


def rerun(
    source: str,
    *,
    outcomes: frozenset[Outcome] = frozenset(DEFAULT_OUTCOMES),
    out_dir: Path = Path("reports"),
    settings: Settings | None = None,
    sandbox: bool = False,
    column_map: Path | None = None,
    master_data_dir: Path | None = None,
    parent: str | None = None,
    worker: bool | None = None,
    wait: bool = True,
    timeout: float | None = None,
    console: Console | None = None,
    concurrency: int = 4,
) -> RunResult:
    """Submit the selected rows of ``source`` (batch id or report file) as a new batch.

    With ``wait`` (always on the embedded Redis) follow it to the end and write its report.
    Nothing selected: exit code 0 and no batch. Never raises for a user mistake.
    """
    from pipeline.commands.run import RunResult

    try:
        return _rerun(
            source, outcomes=outcomes, out_dir=Path(out_dir), settings=settings,
            sandbox=sandbox, column_map=column_map, master_data_dir=master_data_dir,
            parent=parent, worker=worker, wait=wait, timeout=timeout, console=console,
            concurrency=concurrency,
        )
    except UnusableInput as exc:
        return RunResult(2, error=str(exc))


def _rerun(
    source: str, *, outcomes: frozenset[Outcome], out_dir: Path, settings: Settings | None,
    sandbox: bool, column_map: Path | None, master_data_dir: Path | None, parent: str | None,
    worker: bool | None, wait: bool, timeout: float | None, console: Console | None,
    concurrency: int,
) -> RunResult:
    from pipeline.batch.submit import SubmitError, new_batch_id, submit_file
    from pipeline.commands.run import RunResult, follow_and_report, load_settings, open_pipeline

    settings = settings or load_settings()
    with open_pipeline(settings, sandbox=sandbox) as env:
        path, select, up, cmap, master, sheet = _source(
            source, env.store, outcomes, env.settings, column_map, master_data_dir, parent
        )
        names = ",".join(sorted(o.value for o in outcomes))
        if not select:
            return RunResult(0, error=f"nothing to rerun: no row of {source} is {names}")
        # Only this process can work the rerun off (embedded Redis or private sandbox).
        wait = wait or env.local
        if wait and (worker or (worker is None and env.local)):
            env.start_worker(concurrency)
        batch_id = new_batch_id()
        env.store.save_selection(batch_id, select)
        try:
            sub = submit_file(
                path, app=env.app, store=env.store, settings=env.settings, column_map=cmap,
                master_data_dir=master, sheet=sheet, batch_id=batch_id, select=select,
                parent_batch_id=up,
            )
        except SubmitError as exc:
            raise UnusableInput(str(exc)) from None
        env.store.update_meta(batch_id, rerun_outcomes=names)
        if not wait:
            summary = {"batch_id": batch_id, "parent": up, "rows": sub.rows}
            return RunResult(0, summary, batch_id=batch_id)
        result = follow_and_report(env, batch_id, out_dir, console=console, timeout=timeout)
    if result.error is None and result.summary is not None:
        result.summary["parent_batch_id"] = up
    return result


def merged_report(
    batch_id: str, *, out_dir: Path = Path("reports"), settings: Settings | None = None
) -> RunResult:
    """Write ``<out>/<batch>/merged.csv``: the batch's report with its reruns folded in."""
    from pipeline.commands.run import report_batch

    return report_batch(batch_id, out_dir=out_dir, settings=settings, merged=True)
