"""The ``onboard`` pipeline commands as a user runs them (subprocesses): exit codes and
one-line messages for unusable files and settings, and a whole embedded ``run --sandbox``
(private Redis, in-process worker) followed by ``status`` and ``report`` on its state."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.settings import SAMPLE_DATA

ONBOARD = str(Path(sys.executable).parent / "onboard")
DATA = Path(__file__).resolve().parents[1] / "data"


def onboard(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``onboard ARGS`` with no ONBOARD_* settings but ``env``; capture its output."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ONBOARD_")}
    clean["ONBOARD_PIPELINE__STATE_DIR"] = str(cwd / "state")
    clean.update(env or {})
    return subprocess.run(
        [ONBOARD, *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=120,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_run_without_partner_settings_names_them_and_exits_2(tmp_path: Path) -> None:
    """No --sandbox and no partner credentials: exit 2, one line naming every missing one."""
    result = onboard("run", str(SAMPLE_DATA / "customers.csv"), cwd=tmp_path)
    assert result.returncode == 2
    line = one_line_error(result)
    for name in ("CLIENT_ID", "CLIENT_SECRET", "USERNAME", "PASSWORD"):
        assert f"ONBOARD_PARTNER__{name}" in line


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp / "missing.csv", "missing.csv: no such file"),
        (lambda tmp: shutil.copy(DATA / "ragged.csv", tmp / "ragged.csv"), "ragged.csv"),
    ],
    ids=["missing file", "ragged file"],
)
def test_unusable_file_exits_2_with_one_line(
    tmp_path: Path, make: object, expected: str
) -> None:
    """A file that is missing or cannot be read as a table: exit 2, one line naming it."""
    target = make(tmp_path)  # type: ignore[operator]
    result = onboard("run", str(target), "--sandbox", cwd=tmp_path)
    assert result.returncode == 2
    assert expected in one_line_error(result)


def test_submit_and_worker_need_a_shared_redis(tmp_path: Path) -> None:
    """submit and worker without ONBOARD_REDIS_URL: exit 2, one line saying so."""
    for args in (["submit", str(SAMPLE_DATA / "customers.csv")], ["worker"]):
        result = onboard(*args, cwd=tmp_path)
        assert result.returncode == 2
        assert "ONBOARD_REDIS_URL" in one_line_error(result)


def test_bad_setting_is_named(tmp_path: Path) -> None:
    """A setting that does not parse: exit 2, one line naming the variable."""
    result = onboard(
        "run", str(SAMPLE_DATA / "customers.csv"), "--sandbox", cwd=tmp_path,
        env={"ONBOARD_PIPELINE__ROWS_PER_MESSAGE": "zero"},
    )
    assert result.returncode == 2
    assert "ONBOARD_PIPELINE__ROWS_PER_MESSAGE" in one_line_error(result)


def test_bad_log_level_in_dot_env_is_named(tmp_path: Path) -> None:
    """ONBOARD_LOG_LEVEL is a setting read from .env too: a bad one is exit 2, one line."""
    (tmp_path / ".env").write_text("ONBOARD_LOG_LEVEL=loud\n", encoding="utf-8")
    result = onboard("status", cwd=tmp_path)
    assert result.returncode == 2
    assert "ONBOARD_LOG_LEVEL" in one_line_error(result)


def test_embedded_run_with_sandbox_then_status_and_report(tmp_path: Path) -> None:
    """`onboard run FILE --sandbox` with no Redis configured: private Redis and in-process
    worker, exit 1 (the sample has rows that cannot be onboarded), report and summary
    written; afterwards `status` lists the batch and `report` rewrites it from the same
    persistent state directory."""
    shutil.copytree(SAMPLE_DATA / "docs", tmp_path / "docs")
    shutil.copy(SAMPLE_DATA / "customers.csv", tmp_path / "customers.csv")
    fast = {
        "ONBOARD_PIPELINE__MAX_ATTEMPTS": "2",
        "ONBOARD_PIPELINE__BACKOFF_BASE_SECONDS": "0.02",
        "ONBOARD_PIPELINE__BACKOFF_MAX_SECONDS": "0.1",
    }
    result = onboard(
        "run", "customers.csv", "--sandbox", "--out", "out", cwd=tmp_path, env=fast
    )
    assert result.returncode == 1, result.stderr
    batches = list((tmp_path / "out").iterdir())
    assert len(batches) == 1
    batch_id = batches[0].name
    summary = json.loads((batches[0] / "summary.json").read_text())
    assert summary["complete"] is True and summary["rows"] == 52
    assert summary["outcomes"]["onboarded"] == 22
    assert f"report: out/{batch_id}/report.csv" in result.stdout
    assert (batches[0] / "report.xlsx").is_file()

    listed = onboard("status", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert batch_id in listed.stdout and "complete" in listed.stdout
    again = onboard("report", batch_id, "--out", "again", cwd=tmp_path)
    assert again.returncode == 1, again.stderr
    rewritten = json.loads((tmp_path / "again" / batch_id / "summary.json").read_text())
    assert rewritten["outcomes"] == summary["outcomes"]
