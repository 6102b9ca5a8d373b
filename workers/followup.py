"""The partner's status GET for customers left in a non-final state (``onboard follow-up``).

The onboarding flow keeps, per row, the ecrn and statuses of customers the partner answered
with a non-final state (``KYC PENDING``, AML ``Under Investigation``; see
``pipeline.core.followup``). A follow-up asks the status GET for each of those still non-final,
through the same rate limiter and token broker as the workers, and keeps the latest answer (a
failed call keeps the earlier one). Which rows to ask about and where each answer is kept is
``pipeline.batch.followup``'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from pipeline.core.followup import CustomerStatus
from workers.partner.responses import Status
from workers.state import BatchStore, utc_now

if TYPE_CHECKING:
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
        for number, status in store.statuses(batch_id).items():
            latest[number] = (batch_id, status)
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
