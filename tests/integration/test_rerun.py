"""``onboard rerun`` and ``onboard report --merged`` on real parts: the sample file through a
real in-process worker on the test Redis and the sandbox over HTTP, then reruns from the batch
id and from an edited report, and the merged report folding them in."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support import ONBOARD, by_row, read_report, run_to_end, settings_with_worker

from pipeline.batch.rerun import parse_outcomes
from pipeline.commands.report import report_batch
from pipeline.commands.rerun import rerun
from pipeline.core.errors import UserError
from pipeline.core.settings import SAMPLE_DATA, Settings
from sandbox.testing import SandboxHandle, run_sandbox
from workers.state import BatchStore

FAILED_ROWS = {23, 29}  # lookup_internal_error, create_502: fail on every try
BAD_DATE_ROW = 38


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    """One sandbox for the module (short 'slow' wait); reset before each test."""
    with run_sandbox(slow_ms=100) as handle:
        yield handle


@pytest.fixture()
def settings(
    redis_base_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> Iterator[Settings]:
    """Settings on a fresh key prefix (also the queue) of database 13, an ``onboard worker``
    subprocess consuming that queue, and the reset sandbox."""
    with settings_with_worker(redis_base_url, sandbox, tmp_path) as settings:
        yield settings


def business_calls(sandbox: SandboxHandle) -> int:
    """Lookup and onboarding calls the sandbox has answered so far."""
    calls = sandbox.stats()["calls"]
    return sum(calls["lookup"].values()) + sum(calls["onboard"].values())


def test_rerun_of_failed_rows_sends_only_them_and_merges_back(
    settings: Settings, sandbox: SandboxHandle, sample: Path, tmp_path: Path
) -> None:
    """Rerun of a batch id: a new batch linked to the parent holding only the failed rows
    under their original numbers; the sandbox's call count grows by exactly those rows'
    attempts, and selecting done rows too costs nothing for them (the ledger answers). The
    merged report is the parent's with the latest outcome per row and attempts summed."""
    out = tmp_path / "reports"
    parent, first = run_to_end(settings, sample, out)
    assert {n for n, r in first.items() if r["outcome"] == "failed"} == FAILED_ROWS

    before = business_calls(sandbox)
    again = rerun(parent, out_dir=out, settings=settings, worker=False, timeout=60)
    assert again.error is None and again.batch_id not in (None, parent)
    assert again.summary is not None and again.summary["parent_batch_id"] == parent
    rows = by_row(out / str(again.batch_id) / "report.csv")
    assert set(rows) == FAILED_ROWS
    assert again.summary["rows"] == 2 and again.summary["complete"] is True
    spent = sum(int(r["attempts"]) for r in rows.values())
    assert spent >= 2
    assert business_calls(sandbox) - before == spent

    # Done rows selected as well: answered by the ledger, zero partner calls for them.
    before = business_calls(sandbox)
    creates = sandbox.stats()["creates"]
    third = rerun(
        str(again.batch_id), outcomes=parse_outcomes("failed"), out_dir=out,
        settings=settings, worker=False, timeout=60,
    )
    with_done = rerun(
        parent, outcomes=parse_outcomes("failed,onboarded,already_exists"), out_dir=out,
        settings=settings, worker=False, timeout=60,
    )
    assert third.batch_id and with_done.batch_id
    done_rows = by_row(out / with_done.batch_id / "report.csv")
    done_numbers = {n for n, r in first.items() if r["outcome"] in ("onboarded", "already_exists")}
    assert set(done_rows) == done_numbers | FAILED_ROWS
    for number in done_numbers:
        assert done_rows[number]["outcome"] == first[number]["outcome"]
        assert done_rows[number]["attempts"] == "0"
        assert done_rows[number]["ecrn"] == first[number]["ecrn"]
    third_rows = by_row(out / third.batch_id / "report.csv")
    assert set(third_rows) == FAILED_ROWS
    spent = sum(int(r["attempts"]) for r in [*done_rows.values(), *third_rows.values()])
    assert business_calls(sandbox) - before == spent
    assert sandbox.stats()["creates"] == creates
    assert sandbox.stats()["duplicate_creates"] == 0

    merged = report_batch(parent, out_dir=out, settings=settings, merged=True)
    assert merged.error is None and merged.summary is not None
    assert merged.summary["merged"] == [again.batch_id, third.batch_id, with_done.batch_id]
    assert merged.summary["complete"] is True
    rows = by_row(out / parent / "merged.csv")
    assert set(rows) == set(first)
    reruns = [
        by_row(out / str(b) / "report.csv")
        for b in (again.batch_id, third.batch_id, with_done.batch_id)
    ]
    for number, row in rows.items():
        expected = sum(int(r[number]["attempts"]) for r in reruns if number in r)
        assert int(row["attempts"]) == int(first[number]["attempts"]) + expected
        assert row["outcome"] == first[number]["outcome"]
        assert row["ecrn"] == first[number]["ecrn"]
    assert json.loads((out / parent / "merged.summary.json").read_text())["batch_id"] == parent


def test_edited_report_with_fixed_rows_onboards_them(
    settings: Settings, sandbox: SandboxHandle, sample: Path, tmp_path: Path
) -> None:
    """A clerk fixes the bad date of an invalid row in the report and reruns the report with
    ``--outcome invalid``: that row is onboarded, the others stay invalid, nothing else is sent,
    and the merged report of the parent shows the fixed row onboarded."""
    out = tmp_path / "reports"
    parent, first = run_to_end(settings, sample, out)
    assert first[BAD_DATE_ROW]["outcome"] == "invalid"
    column = first[BAD_DATE_ROW]["error_field"]
    edited = out / parent / "report.csv"
    rows = read_report(edited)
    for row in rows:
        if int(row["row_number"]) == BAD_DATE_ROW:
            row[column] = "2031-05-20" if "expiry" in column else "1990-05-20"
    with edited.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    creates = sandbox.stats()["creates"]
    result = rerun(
        str(edited), outcomes=parse_outcomes("invalid"), out_dir=out, settings=settings,
        worker=False, timeout=60,
    )
    assert result.error is None and result.batch_id
    assert result.summary is not None and result.summary["parent_batch_id"] == parent
    got = by_row(out / result.batch_id / "report.csv")
    invalid = {n for n, r in first.items() if r["outcome"] == "invalid"}
    assert set(got) == invalid
    assert got[BAD_DATE_ROW]["outcome"] == "onboarded"
    assert len(got[BAD_DATE_ROW]["ecrn"]) == 16
    assert all(got[n]["outcome"] == "invalid" for n in invalid - {BAD_DATE_ROW})
    # The report's own columns are not carried into the rerun's report as input columns.
    with (out / result.batch_id / "report.csv").open(encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle))
    assert header.count("outcome") == 1 and header.count("row_number") == 1
    assert sandbox.stats()["creates"] == creates + 1

    merged = report_batch(parent, out_dir=out, settings=settings, merged=True)
    assert merged.summary is not None
    rows_after = by_row(out / parent / "merged.csv")
    assert rows_after[BAD_DATE_ROW]["outcome"] == "onboarded"
    assert merged.summary["outcomes"]["onboarded"] == sum(
        1 for r in first.values() if r["outcome"] == "onboarded"
    ) + 1


def test_nothing_selected_and_unknown_source(
    settings: Settings, sandbox: SandboxHandle, sample: Path, tmp_path: Path
) -> None:
    """Selecting an outcome no row has creates no batch (exit 0, says so); an unknown batch
    id or a file that is not a report is a one-line error with exit code 2; a bad outcome
    name is refused naming the choices."""
    out = tmp_path / "reports"
    parent, _ = run_to_end(settings, sample, out)
    client = redis.Redis.from_url(str(settings.redis_url))
    store = BatchStore(client, prefix=settings.pipeline.key_prefix)
    known = set(store.recent_batches())
    # Row 19 is the only not_subscribed row: its rerun holds no invalid row to select.
    none = rerun(parent, outcomes=parse_outcomes("not_subscribed"), out_dir=out,
                 settings=settings, worker=False, timeout=60)
    assert none.batch_id is not None
    empty = rerun(str(none.batch_id), outcomes=parse_outcomes("invalid"), out_dir=out,
                  settings=settings, worker=False)
    assert empty.exit_code == 0 and empty.batch_id is None
    assert empty.error is not None and empty.error.startswith("nothing to rerun")
    assert set(store.recent_batches()) == known | {none.batch_id}

    missing = rerun("2026-01-01-0000-nosuch", out_dir=out, settings=settings, worker=False)
    assert missing.exit_code == 2 and missing.error is not None
    assert "\n" not in missing.error and "neither a report file nor a known batch" in missing.error
    not_report = rerun(str(sample), out_dir=out, settings=settings, worker=False)
    assert not_report.exit_code == 2 and not_report.error is not None
    assert "not a report" in not_report.error
    with pytest.raises(UserError, match="choose from"):
        parse_outcomes("faild")


def onboard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``onboard ARGS`` on the embedded Redis of ``cwd/state`` (no ONBOARD_REDIS_URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONBOARD_")}
    env.update({
        "ONBOARD_PIPELINE__STATE_DIR": str(cwd / "state"),
        "ONBOARD_PIPELINE__MAX_ATTEMPTS": "2",
        "ONBOARD_PIPELINE__BACKOFF_BASE_SECONDS": "0.02",
        "ONBOARD_PIPELINE__BACKOFF_MAX_SECONDS": "0.1",
    })
    return subprocess.run([ONBOARD, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_embedded_rerun_in_a_later_invocation(tmp_path: Path) -> None:
    """Without ONBOARD_REDIS_URL: ``onboard run --sandbox`` in one process, then
    ``onboard rerun BATCH --sandbox`` in another finds the batch and the ledger in the
    persistent state directory, reruns the failed rows only (done rows selected too are
    answered by the ledger with no partner call), and ``onboard report BATCH --merged``
    writes the folded report in a third."""
    shutil.copytree(SAMPLE_DATA / "docs", tmp_path / "docs")
    shutil.copy(SAMPLE_DATA / "customers.csv", tmp_path / "customers.csv")
    first = onboard("run", "customers.csv", "--sandbox", "--out", "out", cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    (parent,) = [p.name for p in (tmp_path / "out").iterdir()]
    parent_rows = by_row(tmp_path / "out" / parent / "report.csv")

    again = onboard("rerun", parent, "--sandbox", "--outcome", "failed,onboarded",
                    "--out", "out", cwd=tmp_path)
    assert again.returncode == 1, again.stderr
    (child,) = [p.name for p in (tmp_path / "out").iterdir() if p.name != parent]
    rows = by_row(tmp_path / "out" / child / "report.csv")
    onboarded = {n for n, r in parent_rows.items() if r["outcome"] == "onboarded"}
    assert set(rows) == FAILED_ROWS | onboarded
    assert all(rows[n]["attempts"] == "0" and rows[n]["outcome"] == "onboarded"
               for n in onboarded)
    assert all(rows[n]["outcome"] == "failed" for n in FAILED_ROWS)
    summary = json.loads((tmp_path / "out" / child / "summary.json").read_text())
    assert summary["parent_batch_id"] == parent
    assert summary["partner_calls"]["onboard"] + summary["partner_calls"]["lookup"] == sum(
        int(rows[n]["attempts"]) for n in FAILED_ROWS
    )

    merged = onboard("report", parent, "--merged", "--out", "out", cwd=tmp_path)
    assert merged.returncode == 1, merged.stderr
    folded = by_row(tmp_path / "out" / parent / "merged.csv")
    assert set(folded) == set(parent_rows)
    for number in FAILED_ROWS:
        assert int(folded[number]["attempts"]) == int(parent_rows[number]["attempts"]) + int(
            rows[number]["attempts"]
        )
    listed = onboard("status", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert f"rerun of {parent}" in listed.stdout
