"""The ``onboard`` command line. Each command is a thin shell over library code.

Heavy imports (pandas, celery, the sandbox) happen inside the commands so ``onboard --help``
stays fast and a user's mistake is reported as one line, never a traceback.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="onboard",
    help="Bulk onboarding of customers onto DRAP's Customer Data Platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
