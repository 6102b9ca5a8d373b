"""The sandbox command line: every knob has an option, knobs round-trip, and mistakes give
one line and exit code 2 without starting a server."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from sandbox.cli import build_parser, knobs_to_argv, main
from sandbox.config import SandboxConfig


def test_help_documents_every_knob() -> None:
    """--help lists an option for every SandboxConfig field."""
    text = build_parser().format_help()
    for name in SandboxConfig.model_fields:
        assert "--" + name.replace("_", "-") in text


def test_knobs_round_trip_through_the_command_line() -> None:
    """Knobs turned into arguments and parsed back give the same configuration."""
    knobs = {
        "token_ttl": 2,
        "latency_ms": 12.5,
        "fault_502": 0.25,
        "faults_on_token": True,
        "issue_refresh_tokens": False,
        "seed": 42,
        "client_secret": SecretStr("s3cret"),
        "scenarios_file": Path("/tmp/x.toml"),
    }
    parsed = vars(build_parser().parse_args(knobs_to_argv(knobs)))
    for listening in ("host", "port", "port_file", "exit_with_parent"):
        parsed.pop(listening)
    assert SandboxConfig.model_validate(parsed) == SandboxConfig.model_validate(knobs)


def test_unknown_knob_is_refused_by_knobs_to_argv() -> None:
    """A knob that SandboxConfig does not have is a ValueError naming it."""
    with pytest.raises(ValueError, match="latencyms"):
        knobs_to_argv({"latencyms": 1})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fault-502", "1.5"], "--fault-502: Input should be less than or equal to 1"),
        (["--token-ttl", "0"], "--token-ttl: Input should be greater than or equal to 1"),
        (["--master-data-dir", "/nonexistent/md", "--port", "0"], "master-data directory"),
        (["--scenarios-file", "/nonexistent/s.toml", "--port", "0"], "cannot read scenario"),
        (["--latency-ms", "fast"], "invalid float value"),
    ],
)
def test_mistakes_give_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad knob values and unusable data files end with one stderr line and exit code 2."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own type errors exit from inside parse_args
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_port_in_use_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A port that is already taken gives one line naming it and exit code 2."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert err.count("\n") == 1


def test_onboard_sandbox_forwards_to_the_sandbox_command_line() -> None:
    """`onboard sandbox --help` shows the sandbox's own option list, and a bad knob given
    through `onboard sandbox` exits with code 2."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    shown = runner.invoke(app, ["sandbox", "--help"])
    assert shown.exit_code == 0
    assert "--fault-502-after-commit" in shown.output
    assert "onboard sandbox" in shown.output
    refused = runner.invoke(app, ["sandbox", "--rps-limit", "-1"])
    assert refused.exit_code == 2
