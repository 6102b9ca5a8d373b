"""The sample file end to end: real Redis, a real in-process Celery worker, the sandbox over
HTTP; every row's outcome, the report's columns and order, the summary, reruns, partial
reports and a changed input file."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import read_report, sandbox_settings

from pipeline.batch.report import PENDING
from pipeline.commands.report import report_batch
from pipeline.commands.run import run_file
from pipeline.commands.submit import submit
from pipeline.core.settings import PipelineSettings, Settings
from pipeline.reports.writer import PIPELINE_REPORT_COLUMNS
from sandbox.testing import SandboxHandle, run_sandbox

ONBOARDED, EXISTS, INVALID = "onboarded", "already_exists", "invalid"
REJECTED, NOT_SUBSCRIBED, FAILED = "rejected", "not_subscribed", "failed"

# Row number → (outcome, error_code): the sandbox scenario table of docs/architecture.md for
# rows 18-35, the sample's deliberately broken rows from 36 on, plain customers before.
EXPECTED: dict[int, tuple[str, str]] = {
    **{n: (ONBOARDED, "") for n in range(2, 18)},
    18: (EXISTS, ""),  # existing
    19: (NOT_SUBSCRIBED, "partner:45003"),
    20: (REJECTED, "partner:45013"),  # lookup_compliance
    21: (REJECTED, "partner:45051"),  # lookup_blocked
    22: (REJECTED, "partner:40001"),  # lookup_bad_request
    23: (FAILED, "partner_unavailable"),  # lookup_internal_error (always)
    24: (ONBOARDED, ""),  # lookup_internal_error_once
    25: (REJECTED, "partner:45051"),  # blocked at onboarding
    26: (REJECTED, "partner:45013"),  # compliance at onboarding
    27: (REJECTED, "partner:45053"),  # invalid_master_data
    28: (REJECTED, "partner:40002"),  # mandatory_missing
    29: (FAILED, "partner_unavailable"),  # create_502 (always)
    30: (ONBOARDED, ""),  # create_502_once
    31: (ONBOARDED, ""),  # create_502_after_commit: the lookup finds our lost create
    32: (ONBOARDED, ""),  # slow
    33: (REJECTED, "partner:45032"),  # update_failure (row carries an ecrn)
    34: (ONBOARDED, ""),  # kyc_pending
    35: (ONBOARDED, ""),  # aml_under_investigation
    36: (INVALID, "required"),
    37: (INVALID, "too_long"),
    38: (INVALID, "bad_date"),
    39: (INVALID, "future_date"),
    40: (INVALID, "too_young"),
    41: (INVALID, "expiry_before_issue"),
    42: (INVALID, "expired"),
    43: (INVALID, "bad_email"),
    44: (INVALID, "bad_phone"),
    45: (INVALID, "bad_boolean"),
    46: (INVALID, "unknown_code"),
    47: (INVALID, "bad_id"),
    48: (INVALID, "duplicate_in_file"),
    49: (INVALID, "file_missing"),
    50: (INVALID, "bad_file_type"),
    51: (INVALID, "bad_path"),
    52: (INVALID, "excel_number"),
    53: (INVALID, "required | unknown_code | bad_email"),
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    """One sandbox for the module (short 'slow' wait); reset before each test."""
    with run_sandbox(slow_ms=200) as handle:
        yield handle


@pytest.fixture()
def fresh_sandbox(sandbox: SandboxHandle) -> SandboxHandle:
    """The module's sandbox with customers and counters cleared."""
    sandbox.reset()
    return sandbox


def settings_for(where: tuple[str, str], sandbox: SandboxHandle, tmp: Path) -> Settings:
    """Settings on the test's Redis and prefix and the sandbox, with quick retries."""
    redis_url, prefix = where
    return sandbox_settings(
        redis_url, prefix, sandbox.base_url, state_dir=tmp / "state", rows_per_message=7,
        max_attempts=3, backoff_base_seconds=0.02, backoff_max_seconds=0.1,
        rate_limit_per_second=1000,
    )


def input_headers(path: Path) -> list[str]:
    """The input file's header row."""
    with path.open(encoding="utf-8", newline="") as handle:
        return next(csv.reader(handle))


def test_sample_file_every_row_outcome_report_and_summary(
    pipeline_redis: tuple[str, str], fresh_sandbox: SandboxHandle, sample: Path, tmp_path: Path
) -> None:
    """Each sample row ends with its expected outcome; the report keeps the input columns in
    order then the outcome columns, one line per row in input order, formula-like cells
    neutralised; summary counts add up; exit code 1 (not every row onboarded)."""
    settings = settings_for(pipeline_redis, fresh_sandbox, tmp_path)
    out = tmp_path / "reports"
    result = run_file(sample, out_dir=out, settings=settings, worker=True, timeout=90)

    assert result.error is None
    assert result.exit_code == 1
    assert result.batch_id is not None
    folder = out / result.batch_id
    assert sorted(p.name for p in folder.iterdir()) == [
        "report.csv", "report.xlsx", "summary.json",
    ]
    rows = read_report(folder / "report.csv")
    with (folder / "report.csv").open(encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle))
    # The input's own ecrn column is carried as the report's ecrn column, not twice.
    carried = [h for h in input_headers(sample) if h not in PIPELINE_REPORT_COLUMNS]
    assert carried == [h for h in input_headers(sample) if h != "ecrn"]
    assert header == carried + list(PIPELINE_REPORT_COLUMNS)
    got = {int(r["row_number"]): (r["outcome"], r["error_code"]) for r in rows}
    assert [int(r["row_number"]) for r in rows] == sorted(EXPECTED)
    assert got == EXPECTED
    by_row = {int(r["row_number"]): r for r in rows}
    assert by_row[18]["ecrn"] == "1000000000000005"
    # A rejected update keeps the ecrn the input row carried.
    assert len(by_row[33]["ecrn"]) == 16
    assert all(
        len(r["ecrn"]) == 16 for r in rows if r["outcome"] in (ONBOARDED, EXISTS)
    )
    assert by_row[9]["branch_note"] == "'+ call after 5pm"
    assert by_row[36]["attempts"] == "0"
    assert int(by_row[29]["attempts"]) >= 3
    # Input columns unchanged: the raw ID cell of the Excel-number row is as typed.
    assert by_row[52]["id_number"] == "7.84199554586091E+14"

    summary = json.loads((folder / "summary.json").read_text())
    assert summary == result.summary
    counts = summary["outcomes"]
    assert sum(counts.values()) == summary["rows"] == 52
    expected_counts = {o: 0 for o in counts}
    for outcome, _ in EXPECTED.values():
        expected_counts[outcome] += 1
    assert counts == expected_counts
    assert counts[PENDING] == 0
    assert summary["complete"] is True
    assert summary["batch_id"] == result.batch_id
    assert summary["input"]["file"] == "customers.csv"
    assert len(summary["input"]["sha256"]) == 64
    assert summary["master_data"]["version"]
    assert summary["started"] and summary["finished"]
    assert summary["partner_calls"]["lookup"] >= 34 - 18
    assert summary["token_grants"] >= 1
    stats = fresh_sandbox.stats()
    assert stats["duplicate_creates"] == 0
    assert summary["partner_calls"]["onboard"] == sum(stats["calls"]["onboard"].values())

    # A rerun of the same file sends nothing for the customers already on the platform.
    creates_before = stats["creates"]
    again = run_file(sample, out_dir=out, settings=settings, worker=True, timeout=90)
    assert again.batch_id != result.batch_id
    rerun = {int(r["row_number"]): r for r in read_report(out / str(again.batch_id) / "report.csv")}
    for number, (outcome, _) in EXPECTED.items():
        assert rerun[number]["outcome"] == outcome
        if outcome in (ONBOARDED, EXISTS):
            assert rerun[number]["attempts"] == "0"
            assert rerun[number]["ecrn"] == by_row[number]["ecrn"]
    assert fresh_sandbox.stats()["creates"] == creates_before


def test_partial_report_of_a_batch_nobody_works_on(
    pipeline_redis: tuple[str, str], fresh_sandbox: SandboxHandle, sample: Path, tmp_path: Path
) -> None:
    """Submitted but not processed: the report lists invalid rows as invalid and every valid
    row as pending, says complete false, and exits 1."""
    settings = settings_for(pipeline_redis, fresh_sandbox, tmp_path)
    submitted = submit(sample, resume=False, settings=settings)
    assert submitted.exit_code == 0 and submitted.batch_id
    result = report_batch(submitted.batch_id, out_dir=tmp_path / "r", settings=settings)
    assert result.exit_code == 1
    summary: dict[str, Any] = result.summary or {}
    assert summary["complete"] is False
    assert summary["finished"] is None
    assert summary["outcomes"][PENDING] == 34
    assert summary["outcomes"][INVALID] == 18
    rows = read_report(tmp_path / "r" / submitted.batch_id / "report.csv")
    assert {r["outcome"] for r in rows[:34]} == {PENDING}


def test_report_refuses_a_changed_input_file(
    pipeline_redis: tuple[str, str], fresh_sandbox: SandboxHandle, sample: Path, tmp_path: Path
) -> None:
    """An input edited after submit: report exits 2 with one line naming the file."""
    settings = settings_for(pipeline_redis, fresh_sandbox, tmp_path)
    submitted = submit(sample, resume=False, settings=settings)
    assert submitted.batch_id
    with sample.open("a", encoding="utf-8") as handle:
        handle.write("\n")
    result = report_batch(submitted.batch_id, out_dir=tmp_path / "r", settings=settings)
    assert result.exit_code == 2
    assert result.error is not None and "\n" not in result.error
    assert "changed" in result.error and "customers.csv" in result.error


def test_unknown_batch_is_a_one_line_error(
    pipeline_redis: tuple[str, str], tmp_path: Path
) -> None:
    """report of a batch id the store does not know: exit 2, one line."""
    url, prefix = pipeline_redis
    settings = Settings(redis_url=url, pipeline=PipelineSettings(key_prefix=prefix))
    result = report_batch("no-such-batch", out_dir=tmp_path, settings=settings)
    assert result.exit_code == 2
    assert result.error == "batch no-such-batch: unknown (or expired) batch"
