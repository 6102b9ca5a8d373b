"""The ``onboard`` command line. Each command is a thin shell over library code.

Heavy imports (pandas, celery, the sandbox) happen inside the commands so ``onboard --help``
stays fast and a user's mistake is reported as one line, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="onboard",
    help="Bulk onboarding of customers onto DRAP's Customer Data Platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="CSV or Excel file of customers.")],
    master_data: Annotated[
        Path | None, typer.Option(help="Directory of master-data code lists.")
    ] = None,
    column_map: Annotated[
        Path | None, typer.Option(help="TOML file mapping the bank's headers.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory for the report files.")] = Path(
        "reports"
    ),
    sheet: Annotated[str | None, typer.Option(help="Sheet to read (default: first).")] = None,
    xlsx: Annotated[bool, typer.Option("--xlsx", help="Also write an .xlsx report.")] = False,
    day_first: Annotated[
        bool, typer.Option("--day-first", help="Read 03/04/1990 as 3 April.")
    ] = False,
) -> None:
    """Check a file against the local rules without sending anything; write a report.

    Exit code 0: every row valid; 1: some rows invalid; 2: the file cannot be used.
    """
    from pipeline.validate_cmd import validate_file

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
        # One plain line (no rich wrapping or markup) so scripts and clerks read it alike.
        print(f"error: {result.error}", file=sys.stderr)
        raise typer.Exit(result.exit_code)
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
