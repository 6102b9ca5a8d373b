"""The Celery task: one message is one chunk of valid rows of one batch.

Message: ``{"batch_id", "chunk_id", "rows": [{"row_number", "id_type", "id_number",
"body"}]}``; ``body`` is the partner's nested JSON, built at submit time (workers touch only
Redis and the partner, never the file system).

The task is thin: it hands the chunk to the process's event loop (``workers.runtime``), where
the rows run concurrently through :func:`workers.flow.process_row`. Delivery is at least once:

- each delivery is counted per chunk; beyond ``max_deliveries`` the chunk is poison and its
  unfinished rows become ``failed`` with code ``poison`` (a chunk that kills its worker would
  otherwise loop forever, since a lost worker's message is requeued);
- rows already recorded (an earlier delivery got that far) are skipped;
- an unexpected error (Redis gone for a moment) retries the chunk after a short countdown,
  far below the visibility timeout; the delivery counter bounds that too.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from celery import Celery, Task

from pipeline.core.outcomes import Outcome, RowError, RowResult
from pipeline.core.settings import Settings
from workers.app import make_app
from workers.flow import RowTask, process_row
from workers.runtime import Runtime, RuntimeHolder

log = structlog.get_logger(__name__)

PROCESS_CHUNK = "onboard.process_chunk"
POISON = "poison"
# Countdown before an errored chunk runs again: long enough for a Redis blip to pass, far
# below any sane visibility timeout.
ERROR_RETRY_SECONDS = 2.0

_HOLDERS: weakref.WeakKeyDictionary[Celery, RuntimeHolder] = weakref.WeakKeyDictionary()


def make_worker_app(
    settings: Settings, *, broker_url: str | None = None, redis_url: str | None = None
) -> Celery:
    """The Celery app with the chunk task registered; ``redis_url`` is the store's Redis
    (redis-py form; defaults to ``settings.redis_url``)."""
    app = make_app(settings, broker_url=broker_url)
    store_url = redis_url or settings.redis_url
    if not store_url:
        raise ValueError("no Redis for the store: pass redis_url or set ONBOARD_REDIS_URL")
    holder = RuntimeHolder(settings, store_url)
    _HOLDERS[app] = holder

    # shared=False: a shared task would be attached to every app created later in this
    # process, carrying this app's runtime (and settings) into theirs.
    @app.task(name=PROCESS_CHUNK, bind=True, ignore_result=True, shared=False)
    def process_chunk(self: Task[Any, Any], message: dict[str, Any]) -> None:
        task_id = str(self.request.id or uuid.uuid4().hex)
        runtime = holder.get()
        try:
            runtime.run(handle_chunk(runtime, message, task_id=task_id))
        except Exception as exc:
            log.warning(
                "chunk.error", batch_id=message.get("batch_id"), task_id=task_id,
                chunk_id=message.get("chunk_id"), error=type(exc).__name__,
            )
            raise self.retry(exc=exc, countdown=ERROR_RETRY_SECONDS, max_retries=None) from exc

    return app


def close_runtime(app: Celery) -> None:
    """Stop the app's per-process runtime (loop thread, clients), if it was started."""
    holder = _HOLDERS.get(app)
    if holder is not None:
        holder.close()


def chunk_message(
    batch_id: str, chunk_id: str, rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The message of one chunk (rows: ``row_number``, ``id_type``, ``id_number``, ``body``)."""
    return {"batch_id": batch_id, "chunk_id": chunk_id, "rows": list(rows)}


async def handle_chunk(runtime: Runtime, message: Mapping[str, Any], *, task_id: str) -> None:
    """Process one delivered chunk to the end (every row recorded), or fail it as poison."""
    batch_id = str(message["batch_id"])
    chunk_id = str(message["chunk_id"])
    rows: list[Mapping[str, Any]] = list(message["rows"])
    structlog.contextvars.bind_contextvars(batch_id=batch_id, task_id=task_id)
    try:
        store = runtime.astore
        delivery = await store.count_delivery(batch_id, chunk_id)
        limit = runtime.settings.pipeline.max_deliveries
        if delivery > limit:
            await _poison(runtime, batch_id, rows, delivery)
            return
        triples = [(int(r["row_number"]), str(r["id_type"]), str(r["id_number"])) for r in rows]
        known = await store.precheck_many(batch_id, triples)
        gate = asyncio.Semaphore(runtime.settings.pipeline.worker_concurrency)

        async def one(row: Mapping[str, Any], precheck: Any) -> None:
            task = RowTask(
                batch_id=batch_id, row_number=int(row["row_number"]),
                id_type=str(row["id_type"]), id_number=str(row["id_number"]),
                body=row["body"], delivery=delivery,
            )
            # Each row runs in its own asyncio task (its own context copy): the partner
            # client's log lines carry the row number too.
            structlog.contextvars.bind_contextvars(row_number=task.row_number)
            async with gate:
                await process_row(
                    task, runtime.client, store, runtime.limiter, policy=runtime.policy,
                    known=precheck,
                )

        # Celery's threads pool enforces no time limits, so the soft limit is kept here: a
        # chunk still running then is cancelled and retried (rows done so far stay recorded;
        # a create cut off keeps its "create sent" marker, so the retry looks up first).
        await asyncio.wait_for(
            asyncio.gather(
                *(one(row, pre) for row, pre in zip(rows, known, strict=True) if pre[0] is None)
            ),
            timeout=runtime.settings.pipeline.task_soft_time_limit_seconds,
        )
        log.debug("chunk.done", chunk_id=chunk_id, rows=len(rows), delivery=delivery)
    finally:
        grants = runtime.take_grants()
        if grants:
            await runtime.astore.count_calls(batch_id, "token", grants)
        structlog.contextvars.unbind_contextvars("batch_id", "task_id")


async def _poison(
    runtime: Runtime, batch_id: str, rows: Sequence[Mapping[str, Any]], delivery: int
) -> None:
    """Give every row of the chunk without an outcome the outcome ``failed``/``poison``."""
    numbers = [int(r["row_number"]) for r in rows]
    recorded = await runtime.astore.recorded(batch_id, numbers)
    message = (
        f"The row's chunk was delivered {delivery} times without finishing (a worker died "
        "each time); rerun the row"
    )
    results = [
        RowResult(n, Outcome.FAILED, errors=[RowError(POISON, "", message)])
        for n in numbers if n not in recorded
    ]
    await runtime.astore.record_outcomes(batch_id, results)
    log.warning("chunk.poison", rows=len(results), delivery=delivery)
