"""The ``onboard`` command line: typer only. Each command calls one function of
:mod:`pipeline.commands`, which returns a :class:`~pipeline.core.results.CommandResult`; this
module prints it and exits with its code. A user's mistake raised outside a command (a bad
setting read for logging) is caught here, once, as the error tree's ``UserError``.

Heavy imports (pandas, celery, the sandbox) happen inside the commands so ``onboard --help``
stays fast.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from pipeline.core.errors import ExitCode

if TYPE_CHECKING:
    from pipeline.core.results import CommandResult

# Arguments and options several commands share, spelled once so their help reads the same.
InputFile = Annotated[Path, typer.Argument(help="CSV or Excel file of customers.")]
OutDir = Annotated[Path, typer.Option(help="Directory for the report files.")]
ColumnMap = Annotated[Path | None, typer.Option(help="TOML file mapping the bank's headers.")]
MasterData = Annotated[Path | None, typer.Option(help="Directory of master-data code lists.")]
Sheet = Annotated[str | None, typer.Option(help="Sheet to read (default: first).")]
UseSandbox = Annotated[
    bool, typer.Option("--sandbox", help="Start the partner sandbox and send there.")
]
BatchId = Annotated[str, typer.Argument(help="Batch id.")]
REPORTS = Path("reports")

app = typer.Typer(
    name="onboard",
    help="Bulk onboarding of customers onto DRAP's Customer Data Platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def validate(
    file: InputFile,
    master_data: MasterData = None,
    column_map: ColumnMap = None,
    out: OutDir = REPORTS,
    sheet: Sheet = None,
    xlsx: Annotated[bool, typer.Option("--xlsx", help="Also write an .xlsx report.")] = False,
    day_first: Annotated[
        bool, typer.Option("--day-first", help="Read 03/04/1990 as 3 April.")
    ] = False,
) -> None:
    """Check a file against the local rules without sending anything; write a report.

    Exit code 0: every row valid; 1: some rows invalid; 2: the file cannot be used.
    """
    from pipeline.commands.validate import validate_file

    result = validate_file(
        file,
        master_data_dir=master_data,
        column_map=column_map,
        out_dir=out,
        sheet=sheet,
        xlsx=xlsx,
        day_first=True if day_first else None,
    )
    if result.summary is None:
        _fail(result.error, result.exit_code)
    _print_validation_summary(result.summary, result.reports)
    raise typer.Exit(result.exit_code)


def _print_validation_summary(summary: dict[str, Any], reports: list[Path]) -> None:
    """Rows, valid, invalid, the most frequent error codes, and where the report is."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    counts = Table(title=f"{summary['input']['file']}", show_header=False)
    counts.add_row("rows", f"{summary['rows']:,}")
    counts.add_row("valid", f"{summary['valid']:,}")
    counts.add_row("invalid", f"{summary['invalid']:,}")
    console.print(counts)
    codes: dict[str, int] = summary["error_codes"]
    if codes:
        top = Table("error code", "count", title="top error codes")
        for code, count in list(codes.items())[:10]:
            top.add_row(code, f"{count:,}")
        console.print(top)
    for path in reports:
        console.print(f"report: {path}", markup=False)


def _fail(error: str | None, code: int = ExitCode.UNUSABLE) -> NoReturn:
    """One plain line on stderr (no rich wrapping) and the exit code."""
    # One plain line (no rich wrapping or markup) so scripts and clerks read it alike.
    print(f"error: {error}", file=sys.stderr)
    raise typer.Exit(code)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """A user mistake (bad file, option or setting) raised inside ends the command with one
    line on stderr and exit code 2, never a traceback."""
    from pipeline.core.errors import UserError

    try:
        yield
    except UserError as exc:
        _fail(str(exc), exc.exit_code)


def _logging(default: str = "WARNING") -> None:
    """structlog for this process: JSON off a terminal, personal data masked.

    The ``ONBOARD_LOG_LEVEL`` setting (environment or ``.env``) wins; otherwise ``default``:
    commands with a progress display keep quiet (WARNING), a worker logs one line per row
    (INFO). A bad setting ends the command here with its one-line message.
    """
    from pipeline.commands.setup import load_settings
    from pipeline.core.logs import configure_logging

    with _user_errors():
        level = load_settings().log_level
    configure_logging(level or default)


def _lines(result: CommandResult) -> NoReturn:
    """Print a result's plain lines (or its one-line error) and exit with its code."""
    if result.error is not None and result.exit_code:
        _fail(result.error, result.exit_code)
    for line in result.lines:
        print(line, flush=True)
    raise typer.Exit(result.exit_code)


def _finish(result: CommandResult) -> NoReturn:
    """Print a batch result (the summary table and report paths, or the one-line error) and
    exit with its code."""
    if result.summary is None:
        _fail(result.error, result.exit_code)
    _print_run_summary(result.summary, result.reports)
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
    raise typer.Exit(result.exit_code)


def _print_run_summary(summary: dict[str, Any], reports: list[Path]) -> None:
    """Rows per outcome, partner calls, and where the report is."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    title = f"batch {summary['batch_id']} · {summary['input']['file']}"
    if not summary["complete"]:
        title += " · NOT COMPLETE (partial report)"
    table = Table(title=title, show_header=False)
    table.add_row("rows", f"{summary['rows']:,}")
    for outcome, count in summary["outcomes"].items():
        if count:
            table.add_row(outcome, f"{count:,}")
    calls = ", ".join(f"{k} {v:,}" for k, v in summary["partner_calls"].items() if v)
    table.add_row("partner calls", calls or "none")
    table.add_row("token grants", f"{summary['token_grants']:,}")
    console.print(table)
    for path in reports:
        console.print(f"report: {path}", markup=False)


@app.command()
def run(
    file: InputFile,
    sandbox: UseSandbox = False,
    out: OutDir = REPORTS,
    column_map: ColumnMap = None,
    master_data: MasterData = None,
    sheet: Sheet = None,
) -> None:
    """Validate, enqueue, onboard every valid row, wait, and write the report.

    Without ONBOARD_REDIS_URL a private Redis and an in-process worker are started.
    Exit code 0: every row onboarded or already there; 1: other outcomes; 2: unusable.
    """
    from pipeline.commands.run import run_file

    _logging()
    result = run_file(
        file, sandbox=sandbox, out_dir=out, column_map=column_map,
        master_data_dir=master_data, sheet=sheet,
    )
    _finish(result)


@app.command()
def submit(
    file: InputFile,
    column_map: ColumnMap = None,
    master_data: MasterData = None,
    sheet: Sheet = None,
    resume: Annotated[bool, typer.Option(
        "--resume/--new-batch",
        help="Continue an enqueue of this same file that was cut short (default).",
    )] = True,
) -> None:
    """Validate and enqueue a file on the shared Redis (ONBOARD_REDIS_URL); print the batch id."""
    from pipeline.commands.submit import submit as submit_file

    _logging()
    result = submit_file(
        file, resume=resume, column_map=column_map, master_data_dir=master_data, sheet=sheet
    )
    if result.batch_id is None:
        _fail(result.error, result.exit_code)
    print(result.batch_id)


@app.command()
def worker(
    concurrency: Annotated[
        int, typer.Option(min=1, help="Chunks in progress at once in this process.")
    ] = 4,
) -> None:
    """Run a worker on the shared Redis (ONBOARD_REDIS_URL); start any number, anywhere."""
    from pipeline.commands.worker import run_worker

    _logging("INFO")
    _lines(run_worker(concurrency))


@app.command()
def status(
    batch: Annotated[str | None, typer.Argument(help="Batch id (omit to list batches).")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Show live progress until the batch completes.")
    ] = False,
) -> None:
    """Show a batch's progress (or list the recent batches)."""
    from rich.console import Console

    from pipeline.commands.status import batch_status

    _logging()
    result = batch_status(batch, follow_batch=follow, console=Console(highlight=False))
    _lines(result)


@app.command()
def recover(batch: BatchId) -> None:
    """Re-enqueue the rows of a batch that have no outcome yet (e.g. a message lost when a
    worker was killed); safe at any time, rows with an outcome are not sent again."""
    from pipeline.commands.recover import recover as recover_rows

    _logging()
    _lines(recover_rows(batch))


@app.command()
def report(
    batch: BatchId,
    out: OutDir = REPORTS,
    merged: Annotated[bool, typer.Option(
        "--merged", help="Fold the batch's reruns in: OUT/BATCH/merged.csv.",
    )] = False,
) -> None:
    """Write a batch's report (a partial one, saying so, while it still runs)."""
    from pipeline.commands.report import report_batch

    _logging()
    result = report_batch(batch, out_dir=out, merged=merged)
    _finish(result)


@app.command()
def rerun(
    source: Annotated[str, typer.Argument(help="Batch id, or a report file (edited or not).")],
    outcome: Annotated[str, typer.Option(
        help="Outcomes to send again, comma separated: failed, not_subscribed, rejected, "
        "invalid.",
    )] = "failed",
    out: OutDir = REPORTS,
    sandbox: UseSandbox = False,
    column_map: ColumnMap = None,
    master_data: MasterData = None,
    parent: Annotated[str | None, typer.Option(
        help="Batch the report belongs to (default: from the summary.json beside it).",
    )] = None,
    wait: Annotated[bool, typer.Option(
        "--wait/--no-wait", help="Follow the rerun and write its report (shared Redis).",
    )] = True,
) -> None:
    """Send the rows of a batch or report whose outcome is selected again, as a new batch.

    Customers already onboarded or already there are answered by the ledger, never sent.
    Exit code 0: every rerun row done (or nothing to rerun); 1: other outcomes; 2: unusable.
    """
    from pipeline.commands.rerun import rerun as rerun_rows

    _logging()
    result = rerun_rows(
        source, outcomes=outcome, out_dir=out, sandbox=sandbox, column_map=column_map,
        master_data_dir=master_data, parent=parent, wait=wait,
    )
    if result.batch_id is None:
        if result.exit_code == ExitCode.DONE:
            print(result.error)
            raise typer.Exit(ExitCode.DONE)
        _fail(result.error, result.exit_code)
    if result.summary is not None and "outcomes" not in result.summary:
        # --no-wait: the rerun batch was only enqueued.
        print(result.batch_id)
        raise typer.Exit(result.exit_code)
    _finish(result)


@app.command(name="follow-up")
def follow_up(
    batch: BatchId,
    out: OutDir = REPORTS,
) -> None:
    """Ask the partner's status GET about customers left KYC PENDING or AML Under
    Investigation; write the report with customer_status and aml_scan_status.

    Exit code 0: none left open; 1: some still open (follow up again later); 2: unusable.
    """
    from pipeline.commands.follow_up import follow_up_batch

    _logging()
    result = follow_up_batch(batch, out_dir=out)
    if result.summary is None:
        _fail(result.error, result.exit_code)
    for line in result.lines:
        print(line)
    for path in result.reports:
        print(f"report: {path}")
    raise typer.Exit(result.exit_code)


@app.command()
def watch(
    folder: Annotated[Path, typer.Argument(help="Drop folder (inbox/ is created in it).")],
    once: Annotated[
        bool, typer.Option("--once", help="Work off what is in the inbox now, then exit.")
    ] = False,
    sandbox: UseSandbox = False,
    column_map: ColumnMap = None,
    master_data: MasterData = None,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Chunks in progress in the in-process worker.")
    ] = 4,
) -> None:
    """Run every file dropped into FOLDER/inbox as a batch; reports go to FOLDER/outbox.

    Settings: ONBOARD_WATCH__SETTLE_SECONDS, __POLL_SECONDS, __MAX_CONCURRENT,
    __ALLOW_DUPLICATES. Without ONBOARD_REDIS_URL a private Redis and worker are started.
    """
    from pipeline.commands.watch import watch_folder

    _logging()
    _lines(watch_folder(
        folder, once=once, sandbox=sandbox, column_map=column_map,
        master_data_dir=master_data, concurrency=concurrency,
        echo=lambda line: print(line, flush=True),
    ))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def sandbox(ctx: typer.Context) -> None:
    """Run the partner sandbox (DRAP on loopback); `onboard sandbox --help` lists every knob."""
    # The sandbox parses its own options so its --help documents every knob in one place.
    from sandbox.cli import main as sandbox_main

    raise typer.Exit(sandbox_main(ctx.args, prog="onboard sandbox"))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
