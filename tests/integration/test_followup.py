"""``onboard follow-up`` on real parts: the sample file through an ``onboard worker``
subprocess and the sandbox; the rows left KYC PENDING / AML Under Investigation are kept,
the status GET is called for those only, and the report gains the latest two statuses."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support import ONBOARD, by_row, run_to_end, settings_with_worker

from pipeline.commands.follow_up import follow_up_batch
from pipeline.commands.report import report_batch
from pipeline.core.followup import FOLLOW_UP_COLUMNS, CustomerStatus
from pipeline.core.settings import Settings
from sandbox.testing import SandboxHandle, run_sandbox
from workers.state import BatchStore

KYC_PENDING_ROW, AML_ROW, PLAIN_ROW = 34, 35, 2


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


def status_calls(sandbox: SandboxHandle) -> int:
    """Status GETs the sandbox has answered."""
    return sum(sandbox.stats()["calls"]["status"].values())


def test_follow_up_asks_only_open_rows_and_records_the_latest_statuses(
    settings: Settings, sandbox: SandboxHandle, sample: Path, tmp_path: Path
) -> None:
    """Onboarding keeps the two non-final rows; a follow-up calls the status GET once per
    open row, writes what it answered into customer_status / aml_scan_status (a stale value
    is replaced, a row that became final is not asked again), exits 1 while rows stay open,
    and the merged report carries the columns too."""
    out = tmp_path / "reports"
    parent, first = run_to_end(settings, sample, out)
    client = redis.Redis.from_url(str(settings.redis_url))
    store = BatchStore(client, prefix=settings.pipeline.key_prefix)
    key = store.keys.statuses(parent)
    kept = {int(k): CustomerStatus.from_json(v) for k, v in client.hgetall(key).items()}
    assert set(kept) == {KYC_PENDING_ROW, AML_ROW}
    assert kept[KYC_PENDING_ROW].customer_status == "KYC PENDING"
    assert kept[AML_ROW].aml_scan_status == "Under Investigation"
    assert kept[AML_ROW].ecrn == first[AML_ROW]["ecrn"]
    # The plain report has no status columns before a follow-up.
    assert "customer_status" not in first[PLAIN_ROW]

    # A stale value, and a row the partner had left pending that is now final.
    stale = CustomerStatus(kept[AML_ROW].ecrn, "STALE", "Under Investigation")
    pending = CustomerStatus(first[PLAIN_ROW]["ecrn"], "KYC PENDING", "Accepted")
    client.hset(key, mapping={AML_ROW: stale.to_json(), PLAIN_ROW: pending.to_json()})
    before = status_calls(sandbox)
    result = follow_up_batch(parent, out_dir=out, settings=settings)
    assert result.error is None and result.summary is not None
    done = result.summary["follow_up"]
    assert (done["checked"], done["updated"], done["failed"], done["still_open"]) == (3, 3, 0, 2)
    assert status_calls(sandbox) - before == 3
    assert result.exit_code == 1
    assert result.summary is not None and result.summary["follow_up"]["checked"] == 3

    with (out / parent / "report.csv").open(encoding="utf-8-sig") as handle:
        header = handle.readline().strip().split(",")
    assert tuple(header[-2:]) == FOLLOW_UP_COLUMNS
    rows = by_row(out / parent / "report.csv")
    assert rows[KYC_PENDING_ROW]["customer_status"] == "KYC PENDING"
    assert rows[AML_ROW]["customer_status"] == "ACTIVE"
    assert rows[AML_ROW]["aml_scan_status"] == "Under Investigation"
    assert (rows[PLAIN_ROW]["customer_status"], rows[PLAIN_ROW]["aml_scan_status"]) == (
        "ACTIVE", "Accepted"
    )
    assert rows[3]["customer_status"] == rows[3]["aml_scan_status"] == ""
    assert all(rows[n]["outcome"] == first[n]["outcome"] for n in first)

    again = follow_up_batch(parent, out_dir=out, settings=settings)
    assert again.summary is not None and again.summary["follow_up"]["checked"] == 2
    assert status_calls(sandbox) - before == 5
    merged = report_batch(parent, out_dir=out, settings=settings, merged=True)
    assert merged.error is None
    assert by_row(out / parent / "merged.csv")[AML_ROW]["customer_status"] == "ACTIVE"


def test_follow_up_of_an_unknown_batch_is_one_line_exit_2(tmp_path: Path) -> None:
    """``onboard follow-up`` for a batch the store does not know: one line, exit code 2."""
    env = {
        "PATH": "/usr/bin:/bin", "ONBOARD_PIPELINE__STATE_DIR": str(tmp_path / "state"),
        "ONBOARD_PARTNER__CLIENT_ID": "c", "ONBOARD_PARTNER__CLIENT_SECRET": "s",
        "ONBOARD_PARTNER__USERNAME": "u", "ONBOARD_PARTNER__PASSWORD": "p",
        "HOME": str(tmp_path),
    }
    done = subprocess.run([ONBOARD, "follow-up", "2026-01-01-0000-nosuch"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: batch 2026-01-01-0000-nosuch: unknown (or expired) batch"
    ]
