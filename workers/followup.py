"""``onboard follow-up BATCH``: the partner's status GET for customers left in a non-final state.

The onboarding flow keeps, per row, the ecrn and statuses of customers the partner answered
with a non-final state (``KYC PENDING``, AML ``Under Investigation``; see
``pipeline.followup``). A follow-up asks the status GET for each of those still non-final,
through the same rate limiter and token broker as the workers, keeps the latest answer (a
failed call keeps the earlier one), marks the batch as followed up and writes its report,
which then carries ``customer_status`` and ``aml_scan_status``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import structlog

from pipeline.followup import CustomerStatus
from pipeline.settings import Settings
from pipeline.validate_cmd import UnusableInput
from workers.responses import Status
from workers.store import BatchStore, utc_now

if TYPE_CHECKING:
    from pipeline.run_cmd import RunResult
    from workers.runtime import Runtime

log = structlog.get_logger(__name__)

# Status calls in flight at once (the global rate limit still applies).
CONCURRENCY = 20


@dataclass(slots=True)
class FollowUp:
    """What a follow-up did: rows asked about, answers kept, calls that failed, still open."""

    checked: int = 0
    updated: int = 0
    failed: int = 0
    still_open: int = 0
    rows: dict[int, CustomerStatus] = field(default_factory=dict)


def open_rows(store: BatchStore, batch_ids: Sequence[str]) -> dict[int, tuple[str, CustomerStatus]]:
    """Row → (batch holding its latest status, status) for rows whose status is not final."""
    latest: dict[int, tuple[str, CustomerStatus]] = {}
    for batch_id in batch_ids:
        raw = cast(dict[bytes, bytes], store.r.hgetall(store.keys.statuses(batch_id)))
        for number, value in raw.items():
            latest[int(number)] = (batch_id, CustomerStatus.from_json(value))
    return {n: v for n, v in latest.items() if not v[1].final and v[1].ecrn}


async def check_statuses(
    runtime: Runtime, batch_id: str, rows: dict[int, CustomerStatus]
) -> FollowUp:
    """Ask the status GET for each row's customer; the latest statuses in ``rows`` order."""
    result = FollowUp()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(number: int, known: CustomerStatus) -> None:
        async with gate, runtime.limiter.slot():
            answer = await runtime.client.status(known.ecrn)
        result.checked += 1
        if isinstance(answer, Status):
            result.updated += 1
            result.rows[number] = CustomerStatus(
                known.ecrn, answer.customer_status or known.customer_status,
                answer.aml_scan_status or known.aml_scan_status, utc_now(),
            )
        else:
            result.failed += 1
            log.warning("followup.no_status", batch_id=batch_id, row_number=number,
                        answer=type(answer).__name__)

    await asyncio.gather(*(one(n, s) for n, s in rows.items()))
    if result.checked:
        await runtime.astore.count_calls(batch_id, "status", result.checked)
    result.still_open = sum(1 for s in result.rows.values() if not s.final) + result.failed
    return result


def save_statuses(store: BatchStore, batch_id: str, rows: dict[int, CustomerStatus]) -> None:
    """Keep the answers under the batch and mark it followed up (its report shows them)."""
    key = store.keys.statuses(batch_id)
    pipe = store.r.pipeline(transaction=True)
    if rows:
        pipe.hset(key, mapping={n: s.to_json() for n, s in rows.items()})
        pipe.expire(key, store.ttl)
    pipe.hset(store.keys.meta(batch_id), "followed_up", utc_now())
    pipe.execute()


def follow_up_batch(
    batch_id: str, *, out_dir: Path = Path("reports"), settings: Settings | None = None,
    sandbox_url: str | None = None,
) -> tuple[RunResult, FollowUp | None]:
    """Follow up a batch (and its reruns) and write its report; never raises for a user
    mistake (exit code 2, one line). ``sandbox_url`` points the partner at a sandbox."""
    from pipeline.batch_report import write_batch_report
    from pipeline.rerun import find_reruns
    from pipeline.run_cmd import (
        RunResult,
        _check_timing,
        _redis,
        _store,
        _with_sandbox,
        load_settings,
    )
    from workers.runtime import Runtime
    from workers.submit import batch_state

    try:
        settings = settings or load_settings()
        if sandbox_url:
            settings = _with_sandbox(settings, sandbox_url)
        elif missing := settings.partner.missing():
            raise UnusableInput(f"missing partner settings: {', '.join(missing)}")
        _check_timing(settings)
        with _redis(settings) as info:
            store = _store(info.redis_url, settings)
            try:
                if batch_state(store, batch_id) is None:
                    raise UnusableInput(f"batch {batch_id}: unknown (or expired) batch")
                batches = [batch_id, *find_reruns(store, batch_id)]
                pending = open_rows(store, batches)
                done = FollowUp()
                if pending:
                    runtime = Runtime(settings, info.redis_url)
                    try:
                        done = runtime.run(check_statuses(
                            runtime, batch_id, {n: s for n, (_, s) in pending.items()}
                        ))
                        grants = runtime.take_grants()
                        if grants:
                            store.count_calls(batch_id, "token", grants)
                    finally:
                        runtime.close()
                # Each answer goes to the followed batch (its report shows it) and to the
                # rerun that held the row's latest status, so the merged report (latest
                # batch wins) shows it too.
                save_statuses(store, batch_id, done.rows)
                for holder in batches[1:]:
                    save_statuses(store, holder, {
                        n: s for n, s in done.rows.items() if pending[n][0] == holder
                    })
                report = write_batch_report(store, batch_id, Path(out_dir), settings=settings)
            finally:
                store.r.close()
    except UnusableInput as exc:
        return RunResult(2, error=str(exc)), None
    report.summary["follow_up"] = {
        "checked": done.checked, "updated": done.updated, "failed": done.failed,
        "still_open": done.still_open,
    }
    code = 0 if done.still_open == 0 else 1
    return RunResult(code, report.summary, None, report.paths, batch_id), done
