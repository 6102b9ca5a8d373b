"""The Celery app: one pure function builds its whole configuration from the settings.

Choices and why:

- late acks + ``task_reject_on_worker_lost``: a chunk whose worker dies is redelivered, not
  lost; the store's per-chunk delivery counter stops a poison chunk from looping forever;
- prefetch 1: a worker holds one unacknowledged chunk beyond the one it runs, so a dead
  worker strands little work and rows spread evenly over workers;
- results ignored, no backend: completion is read from the store's counters, not chords;
- every time limit and retry countdown far below the Redis visibility timeout, or Redis would
  hand a still-running chunk to a second worker;
- Celery's own ``rate_limit`` is off: it is per worker, and the partner's quota is global
  (``workers.ratelimit``);
- ``worker_max_tasks_per_child`` = 1000 chunks (~100k rows): a prefork child is recycled now
  and then so slow leaks cannot grow without bound; the cost is one new HTTP client and a
  token read from Redis per recycle, nothing per row;
- chunk messages are JSON written and read by orjson (:data:`SERIALIZER`) and zlib-compressed
  (:data:`COMPRESSION`, level 3): a chunk of 100 partner bodies is a large, repetitive JSON
  text, larger still in Redis once Celery has wrapped it (JSON envelope, base64 body), and
  compressed it takes several times less room in the queue. kombu's own JSON calls a Python
  hook for every dict (five per row) on decoding and is slow both ways; orjson writes many
  times faster and reads about twice as fast, which pays for the compression at submit and
  leaves the worker's main thread less to hold the GIL for while the event loop waits.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Sequence
from typing import Any, cast

import orjson
from celery import Celery
from kombu import compression, serialization

from pipeline.core.errors import UserError
from pipeline.core.settings import Settings

MAX_TASKS_PER_CHILD = 1000
# Limits and countdowns must stay below this share of the visibility timeout.
VISIBILITY_MARGIN = 0.5
# Compression of every message this app sends: zlib at level 3, registered under our own
# name. kombu's "zlib" is level 6: slightly smaller messages, but its compressing costs more
# than twice the CPU, seconds more on a million-row submit that must stay under 60 s. Any
# level decompresses with the same ``zlib.decompress``; submit and worker both import this
# module, so both know the method.
COMPRESSION = "onboard-zlib3"
ZLIB_LEVEL = 3
compression.register(
    functools.partial(zlib.compress, level=ZLIB_LEVEL), zlib.decompress,
    "application/x-onboard-zlib", aliases=[COMPRESSION],
)
# Serializer of every message this app sends: plain JSON (strings, numbers, lists, maps) by
# orjson. Workers still accept kombu's "json", so messages queued before it still decode.
SERIALIZER = "onboard-json"
serialization.register(
    # orjson writes bytes, which kombu takes as such for a "binary" encoding (its stubs say str).
    SERIALIZER, cast("Callable[[Any], str]", orjson.dumps), orjson.loads,
    content_type="application/x-onboard-json", content_encoding="binary",
)


class ConfigError(UserError):
    """Settings that cannot work together; the message names the settings."""


def check_timing(settings: Settings) -> None:
    """Refuse time limits or retry delays that could let Redis redeliver a running chunk."""
    p = settings.pipeline
    ceiling = p.visibility_timeout_seconds * VISIBILITY_MARGIN
    prefix = "ONBOARD_PIPELINE__"
    if p.task_soft_time_limit_seconds >= p.task_time_limit_seconds:
        raise ConfigError(
            f"{prefix}TASK_SOFT_TIME_LIMIT_SECONDS ({p.task_soft_time_limit_seconds}) must be "
            f"below {prefix}TASK_TIME_LIMIT_SECONDS ({p.task_time_limit_seconds})"
        )
    # A create claim that expires while its create is still in flight would let a second
    # worker create the same customer: the claim must outlive the slowest possible call.
    partner = settings.partner
    slowest_call = (
        partner.connect_timeout + partner.write_timeout + partner.read_timeout
        + partner.pool_timeout
    )
    if p.claim_ttl_seconds <= slowest_call:
        raise ConfigError(
            f"{prefix}CLAIM_TTL_SECONDS ({p.claim_ttl_seconds}) must exceed the partner "
            f"timeouts together ({slowest_call:g} s: connect + write + read + pool)"
        )
    for name, value in (
        ("TASK_TIME_LIMIT_SECONDS", p.task_time_limit_seconds),
        ("BACKOFF_MAX_SECONDS", p.backoff_max_seconds),
    ):
        if value >= ceiling:
            raise ConfigError(
                f"{prefix}{name} ({value}) must be below half of "
                f"{prefix}VISIBILITY_TIMEOUT_SECONDS ({p.visibility_timeout_seconds})"
            )


def celery_config(settings: Settings, *, broker_url: str | None = None) -> dict[str, Any]:
    """The complete Celery configuration for these settings.

    ``broker_url`` overrides ``settings.redis_url`` (the embedded Redis passes its own).
    """
    url = broker_url or settings.redis_url
    if not url:
        raise ConfigError("no broker: set ONBOARD_REDIS_URL (or use the embedded Redis)")
    check_timing(settings)
    p = settings.pipeline
    return {
        "broker_url": url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": p.visibility_timeout_seconds,
            # Detect a half-dead connection instead of waiting on it forever (design §5).
            "health_check_interval": 25,
            "socket_keepalive": True,
            # kombu looks for messages of dead workers only every interval × throttle seconds
            # (100 s by default); sweep every few seconds of the visibility timeout instead,
            # so a killed worker's chunks come back soon after it expires.
            "unacked_restore_interval": max(1, min(10, p.visibility_timeout_seconds // 4)),
            "unacked_restore_throttle": 1,
        },
        "result_backend": None,
        "task_ignore_result": True,
        "task_store_errors_even_if_ignored": False,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_max_tasks_per_child": MAX_TASKS_PER_CHILD,
        "worker_disable_rate_limits": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_send_sent_event": False,
        "task_soft_time_limit": p.task_soft_time_limit_seconds,
        "task_time_limit": p.task_time_limit_seconds,
        "task_serializer": SERIALIZER,
        "task_compression": COMPRESSION,
        "result_serializer": "json",
        "accept_content": [SERIALIZER, "json"],
        "task_default_queue": p.queue,
        "task_default_exchange": p.queue,
        "task_default_routing_key": p.queue,
        "timezone": "UTC",
        "enable_utc": True,
    }


def make_app(
    settings: Settings, *, broker_url: str | None = None, include: Sequence[str] = ()
) -> Celery:
    """A Celery app configured by :func:`celery_config`; ``include`` names task modules."""
    app = Celery("onboard", include=list(include), set_as_current=False)
    app.conf.update(celery_config(settings, broker_url=broker_url))
    return app
