"""One customer, end to end: ledger check, lookup, claim, onboard (docs/architecture.md).

:func:`process_row` is a plain async function over a partner client, the async store and the
rate limiter; the Celery task around it stays thin. The rules that make an at-least-once
queue produce each customer at most once:

- a row that already has an outcome (a redelivered chunk) is not sent again;
- a customer in the ledger (done by an earlier batch) costs no partner call;
- a create is only ever sent by the holder of the customer's claim, after "create sent" is
  marked; its fate is in doubt until a final answer, and a lost answer (502, timeout, reset)
  leads back to the *lookup*, never to a blind second create; a lookup that finds the
  customer while "create sent" is marked means our create landed: ``onboarded``;
- a "not found" goes stale when another worker's create ends after our lookup began: the
  claim is fenced (``claim_create``), so such a lookup is made again before any create; a
  create that got no answer at all may still land later, so its claim is kept another TTL
  and nobody (not even its own retry) creates again before a later lookup;
- transient trouble is retried with exponential backoff and jitter, honouring
  ``Retry-After`` (a 429 pauses every worker through the limiter), up to ``max_attempts``
  transient answers, then ``failed`` with ``partner_unavailable``.

``attempts`` in the result is the number of partner calls the row took in this processing
(0 when the ledger or an earlier delivery answered it).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from pipeline.core.followup import needs_follow_up
from pipeline.core.outcomes import Outcome, RowError, RowResult
from pipeline.core.settings import PipelineSettings
from workers.partner.responses import (
    Found,
    NotFound,
    NotSubscribed,
    Onboarded,
    PartnerResult,
    Rejected,
    Transient,
    Unauthorized,
)
from workers.ratelimit import AsyncRateLimiter
from workers.state import AsyncBatchStore, LedgerEntry, RowRecord

log = structlog.get_logger(__name__)

ID_FIELD = "id_number"

# Clerk-readable words for the partner's business codes (docs/partner-api.md); the partner's own
# message follows when it sends one.
REJECTION_TEXT = {
    "40001": "The partner could not read the request (bad format)",
    "40002": "A field the partner requires is missing or badly formatted",
    "45005": "The partner could not read the lookup request",
    "45013": "The customer is under compliance investigation at the partner",
    "45032": "The partner could not update this customer",
    "45051": "The customer is blocked at the partner",
    "45053": "A code is not in the partner's master data",
}


class Partner(Protocol):
    """The partner calls the flow needs (``workers.partner.client.PartnerClient`` is one)."""

    async def lookup(self, id_type: str, id_number: str) -> PartnerResult:
        """Look the customer up by ID."""
        ...

    async def onboard(self, body: Mapping[str, Any]) -> PartnerResult:
        """Create the customer."""
        ...


@dataclass(frozen=True, slots=True)
class RowTask:
    """One valid row as a task carries it: where it belongs and what to send.

    ``delivery`` is how many times the chunk holding it has been delivered (1 the first
    time); it only goes into the log.
    """

    batch_id: str
    row_number: int
    id_type: str
    id_number: str
    body: Mapping[str, Any] = field(repr=False)
    delivery: int = 1


@dataclass(frozen=True, slots=True)
class FlowPolicy:
    """Retry and claim knobs (from ``PipelineSettings``)."""

    max_attempts: int = 5
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    claim_ttl_seconds: int = 120
    # How often to look whether another worker's claim is gone.
    claim_poll_seconds: float = 0.2

    @classmethod
    def from_settings(cls, settings: PipelineSettings) -> FlowPolicy:
        """The policy the pipeline settings describe."""
        return cls(
            max_attempts=settings.max_attempts,
            backoff_base_seconds=settings.backoff_base_seconds,
            backoff_max_seconds=settings.backoff_max_seconds,
            claim_ttl_seconds=settings.claim_ttl_seconds,
        )


# Answers of :meth:`AsyncBatchStore.claim_create`.
HELD, CLAIMED, LOOK_AGAIN, FINISHED = 0, 1, 2, 3
# Answers that mean the partner's gateway gave up waiting, not that the create ended.
_GATEWAY_TIMEOUTS = frozenset({"http_408", "http_504"})


def still_running(answer: Transient) -> bool:
    """True when a create got no real answer (timeout, dropped connection, gateway timeout):
    the partner may still be processing it and land it later."""
    return answer.in_doubt and (answer.code is None or answer.code in _GATEWAY_TIMEOUTS)


def backoff_delay(policy: FlowPolicy, failures: int, retry_after: float | None) -> float:
    """Seconds before the next try: exponential with jitter, never less than Retry-After."""
    ceiling = min(policy.backoff_max_seconds, policy.backoff_base_seconds * 2.0 ** (failures - 1))
    # "Equal jitter": at least half the exponential step, so retries do spread out but
    # never collapse to zero.
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    return max(delay, retry_after or 0.0)


class _Row:
    """The mutable state of one row while it is processed."""

    def __init__(self, row: RowTask) -> None:
        self.row = row
        self.calls = {"lookup": 0, "onboard": 0}
        self.failures = 0
        # Set by a final partner answer: the customer's keys are settled with the outcome
        # (ledger written when done, "create sent" dropped, claim released).
        self.settle_customer = False
        self.ledger: LedgerEntry | None = None
        # Another owner's create attempt our latest lookup began after (see claim_create).
        self.acknowledged = ""

    @property
    def attempts(self) -> int:
        return self.calls["lookup"] + self.calls["onboard"]

    def result(
        self, outcome: Outcome, *, ecrn: str = "", error: RowError | None = None
    ) -> RowResult:
        errors = [error] if error else []
        return RowResult(self.row.row_number, outcome, ecrn, errors, self.attempts)

    def final(
        self, outcome: Outcome, *, ecrn: str = "", error: RowError | None = None,
        settle: bool = True,
    ) -> RowResult:
        """A final partner answer. With ``settle`` the customer's keys are settled with it:
        only answers that prove whether a create landed may drop "create sent"."""
        self.settle_customer = settle
        if outcome.is_done:
            self.ledger = LedgerEntry(outcome, ecrn, self.row.batch_id)
        return self.result(outcome, ecrn=ecrn, error=error)


Precheck = tuple[RowRecord | None, LedgerEntry | None]


async def process_row(
    row: RowTask,
    client: Partner,
    store: AsyncBatchStore,
    limiter: AsyncRateLimiter,
    *,
    policy: FlowPolicy | None = None,
    owner: str | None = None,
    record: bool = True,
    known: Precheck | None = None,
) -> RowResult:
    """Take one customer to its final outcome; record it (first outcome wins) unless told not.

    ``owner`` names the claim holder (a task id; default a fresh uuid). ``known`` is this
    row's entry of :meth:`AsyncBatchStore.precheck_many` when the caller fetched a whole
    chunk's at once (saves a round trip per row). Never raises for partner trouble; Redis
    errors propagate (the chunk is then retried by Celery).
    """
    policy = policy or FlowPolicy()
    owner = owner or uuid.uuid4().hex
    state = _Row(row)
    if known is None:
        known = await store.precheck(row.batch_id, row.row_number, row.id_type, row.id_number)
    existing, ledger = known
    if existing is not None:
        return _from_record(existing)
    if ledger is not None:
        result = state.result(ledger.outcome, ecrn=ledger.ecrn)
    else:
        result = await _lookup_then_onboard(state, client, store, limiter, policy, owner)
    await store.finish_row(
        row.batch_id, result,
        customer=(row.id_type, row.id_number) if state.settle_customer else None,
        owner=owner, ledger=state.ledger, calls=state.calls, record=record,
    )
    log.info(
        "row.done", batch_id=row.batch_id, row_number=row.row_number, outcome=result.outcome,
        code=result.errors[0].code if result.errors else None, attempts=result.attempts,
        delivery=row.delivery, from_ledger=ledger is not None,
    )
    return result


async def _lookup_then_onboard(
    state: _Row, client: Partner, store: AsyncBatchStore, limiter: AsyncRateLimiter,
    policy: FlowPolicy, owner: str,
) -> RowResult:
    row = state.row
    while True:
        async with limiter.slot():
            found = await client.lookup(row.id_type, row.id_number)
        state.calls["lookup"] += 1

        if isinstance(found, Found):
            # Our own earlier create may be the reason it exists (a lost answer).
            ours = await store.create_sent(row.id_type, row.id_number)
            outcome = Outcome.ONBOARDED if ours else Outcome.ALREADY_EXISTS
            await _keep_non_final(
                store, row, found.ecrn, found.data.get("customer_status"),
                found.data.get("aml_scan_status"),
            )
            return state.final(outcome, ecrn=found.ecrn)
        if not isinstance(found, NotFound):
            final = await _settle(state, found, store, limiter, policy, owner, creating=False)
            if final is not None:
                return final
            continue

        # The claim is taken inside the rate slot so it is held only for the HTTP call
        # itself, never while queueing for the limiter: its TTL must outlast the call.
        async with limiter.slot():
            claim, seen = await store.claim_create(
                row.id_type, row.id_number, owner, state.calls["onboard"] + 1,
                state.acknowledged, policy.claim_ttl_seconds,
            )
            created = await client.onboard(row.body) if claim == CLAIMED else None
        if claim == FINISHED:
            # Another worker finished this customer while we looked it up.
            ledger = LedgerEntry.from_json(seen)
            return state.result(ledger.outcome, ecrn=ledger.ecrn)
        if claim == LOOK_AGAIN:
            # Our "not found" may be stale: another worker's create ended (landed, or in
            # doubt) after our lookup may have begun. Only a fresh lookup can tell; the
            # attempt is acknowledged so that lookup may lead to our own create.
            state.acknowledged = seen
            continue
        if created is None:
            # Another worker is creating this customer right now: wait until it has an
            # answer (or its claim expired), then start again at the lookup.
            await _wait_for_claim(store, row, policy)
            continue
        state.calls["onboard"] += 1
        if isinstance(created, Onboarded):
            await _keep_non_final(
                store, row, created.ecrn, created.customer_status, created.aml_scan_status
            )
            return state.final(Outcome.ONBOARDED, ecrn=created.ecrn)
        final = await _settle(state, created, store, limiter, policy, owner, creating=True)
        if final is not None:
            return final


async def _keep_non_final(
    store: AsyncBatchStore, row: RowTask, ecrn: str, customer_status: Any, aml: Any
) -> None:
    """Keep a non-final customer state (KYC pending, AML under investigation) for
    ``onboard follow-up``; final states cost nothing (no write)."""
    if needs_follow_up(str(customer_status or ""), str(aml or "")):
        await store.note_status(
            row.batch_id, row.row_number, ecrn, str(customer_status or ""), str(aml or "")
        )


async def _settle(
    state: _Row, answer: PartnerResult, store: AsyncBatchStore, limiter: AsyncRateLimiter,
    policy: FlowPolicy, owner: str, *, creating: bool,
) -> RowResult | None:
    """Turn a non-success answer into a final result, or wait and return None to go on."""
    row = state.row
    # A refused create proves it did not land (settle: release the claim, drop "create
    # sent"). A refused lookup proves nothing about an earlier create in doubt, so its
    # marker stays for the next run; no claim is held during a lookup.
    if isinstance(answer, NotSubscribed):
        text = "The customer exists on the platform but is not subscribed for this partner"
        return state.final(
            Outcome.NOT_SUBSCRIBED,
            error=RowError("partner:45003", ID_FIELD, _with(text, answer.message)),
            settle=creating,
        )
    if isinstance(answer, Rejected):
        return state.final(Outcome.REJECTED, error=_rejection(answer), settle=creating)
    if isinstance(answer, Unauthorized):
        # The client already renewed the token once; a second refusal is not ours to fix.
        return state.final(
            Outcome.FAILED,
            error=RowError("unauthorized", "", "The partner refused our credentials"),
            settle=creating,
        )

    transient = answer if isinstance(answer, Transient) else Transient("unexpected_result")
    if creating and still_running(transient):
        # No answer at all: the partner may still be working on the create and land it
        # later, after any lookup made now. The claim stays ours for another full TTL, so
        # no create (not even our own retry) goes out before that; a lookup may still
        # find the customer and settle the row sooner.
        await store.hold_claim(row.id_type, row.id_number, owner, policy.claim_ttl_seconds)
    elif creating:
        # The partner answered, so the create is over; whether it landed is unknown: keep
        # "create sent" so the next lookup can tell, but let go of the claim so nobody
        # waits on us during the backoff.
        await store.release_claim(row.id_type, row.id_number, owner)
    state.failures += 1
    if state.failures >= policy.max_attempts:
        # Not settled: a create in doubt keeps its "create sent" marker for the next run.
        reason = transient.code or transient.reason
        return state.result(
            Outcome.FAILED,
            error=RowError(
                "partner_unavailable", "",
                f"The partner did not answer usefully after {state.failures} tries "
                f"(last: {reason}); rerun the row later",
            ),
        )
    delay = backoff_delay(policy, state.failures, transient.retry_after)
    if transient.reason == "rate_limited":
        await limiter.pause(delay)
    await asyncio.sleep(delay)
    return None


async def _wait_for_claim(store: AsyncBatchStore, row: RowTask, policy: FlowPolicy) -> None:
    """Poll until the other worker's claim is gone; a dead worker's claim expires by TTL."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + policy.claim_ttl_seconds + 1
    while loop.time() < deadline:
        if await store.claim_owner(row.id_type, row.id_number) is None:
            return
        await asyncio.sleep(policy.claim_poll_seconds)


def _rejection(answer: Rejected) -> RowError:
    text = _with(REJECTION_TEXT.get(answer.code, "The partner refused the customer"),
                 answer.message)
    if answer.details:
        problems = "; ".join(f"{k}: {v}" if k else v for k, v in answer.details.items())
        text = f"{text} ({problems})"
    return RowError(f"partner:{answer.code}", "; ".join(k for k in answer.details if k), text)


def _with(text: str, partner_message: str) -> str:
    return f"{text}: {partner_message}" if partner_message else text


def _from_record(record: RowRecord) -> RowResult:
    errors = (
        [RowError(record.error_code, record.error_field, record.error_message)]
        if record.error_code else []
    )
    return RowResult(record.row_number, record.outcome, record.ecrn, errors, record.attempts)
