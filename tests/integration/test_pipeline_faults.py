"""2,000 rows against a faulty sandbox with a 2 s token: every row ends in exactly one outcome,
no customer is created twice, and the shared token is renewed about once per lifetime."""

from __future__ import annotations

import math
import time
from pathlib import Path

from support import generated_input, read_report, sandbox_settings

from pipeline.commands.run import run_file
from pipeline.core.outcomes import Outcome
from sandbox.testing import run_sandbox

ROWS = 2000
TOKEN_TTL = 2


def test_two_thousand_rows_with_faults_end_once_each_without_duplicate_creates(
    pipeline_redis: tuple[str, str], tmp_path: Path
) -> None:
    """10 % 502, 5 % body-level 45006, 2 % 502 after commit, 2 % timeouts, 2 s tokens: every
    row has one final outcome in the report, the sandbox saw zero duplicate creates, and token
    grants stay within the lifetimes elapsed + 1."""
    source = generated_input(tmp_path / "customers.csv", ROWS, seed=11)
    knobs = {
        "fault_502": 0.10, "fault_45006": 0.05, "fault_502_after_commit": 0.02,
        "fault_timeout": 0.02, "timeout_hang_s": 0.6, "token_ttl": TOKEN_TTL,
        "refresh_ttl": 60, "seed": 5,
    }
    redis_url, prefix = pipeline_redis
    with run_sandbox(**knobs) as sandbox:
        settings = sandbox_settings(
            redis_url, prefix, sandbox.base_url,
            partner={
                "connect_timeout": 1, "read_timeout": 0.3, "write_timeout": 1,
                "pool_timeout": 1,
                # Renew close to the end of the short lifetime (one grant per lifetime).
                "refresh_skew_fraction": 0.05,
            },
            state_dir=tmp_path / "state", rows_per_message=50, max_attempts=8,
            backoff_base_seconds=0.01, backoff_max_seconds=0.1,
            # A create that timed out keeps its claim this long (it may still land), so the
            # shortest claim the timeouts above allow (> 3.3 s) keeps the test short.
            rate_limit_per_second=5000, claim_ttl_seconds=4,
        )
        started = time.monotonic()
        result = run_file(
            source, out_dir=tmp_path / "out", settings=settings, worker=True, timeout=150
        )
        elapsed = time.monotonic() - started
        stats = sandbox.stats()

    assert result.error is None, result.error
    assert result.summary is not None and result.summary["complete"] is True
    rows = read_report(tmp_path / "out" / str(result.batch_id) / "report.csv")
    numbers = [int(r["row_number"]) for r in rows]
    assert numbers == list(range(2, ROWS + 2))
    closed = {o.value for o in Outcome}
    assert all(r["outcome"] in closed for r in rows)
    counts = result.summary["outcomes"]
    assert sum(counts.values()) == ROWS and counts["pending"] == 0
    # Most rows get through the faults; those that do not say why.
    assert counts["onboarded"] > ROWS * 0.95
    assert all(r["error_code"] for r in rows if r["outcome"] == "failed")
    # The faults really happened, and the lost creates were found again, not repeated.
    for fault in ("fault_502", "fault_45006", "fault_502_after_commit", "fault_timeout"):
        assert stats["faults"].get(fault, 0) > 0, fault
    assert stats["duplicate_creates"] == 0
    assert stats["repeat_creates"] == 0
    assert stats["creates"] == counts["onboarded"]
    grants = stats["grants"]["password"] + stats["grants"]["refresh"]
    lifetimes = math.ceil(elapsed / TOKEN_TTL)
    assert 1 <= grants <= lifetimes + 1, (grants, elapsed)
