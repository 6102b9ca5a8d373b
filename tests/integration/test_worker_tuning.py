"""The worker's throughput tuning on real parts: the runtime's loop and GIL switch interval,
and chunk messages compressed in the Redis queue yet decoded intact by the consumer."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import uvloop

from pipeline.core.settings import PipelineSettings, Settings
from workers.app import COMPRESSION, SERIALIZER, celery_config, make_app
from workers.runtime import SWITCH_INTERVAL, Runtime, tune_switch_interval
from workers.tasks import PROCESS_CHUNK, chunk_message


@pytest.fixture()
def default_switch_interval() -> Iterator[None]:
    """Python's default switch interval during the test, the previous one restored after."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(saved)


def _settings(redis_url: str, queue: str = "onboard") -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=redis_url,
        pipeline=PipelineSettings(queue=queue, key_prefix=queue),
    )


def _rows(n: int) -> list[dict[str, Any]]:
    """Rows shaped like submit's: similar partner bodies, distinct ID numbers."""
    return [
        {
            "row_number": i + 2, "id_type": "4", "id_number": f"784198{i:09d}",
            "body": {
                "channel": "BULK", "agent_location_id": "AGT021", "first_name": f"Name{i}",
                "last_name": "Synthetic", "nationality": "AE", "date_of_birth": "1985-04-19",
                "primary_mobile_number": f"+9715{i:08d}", "occupation_id": "7",
                "address_list": [{"address_type_id": "1", "city": "Dubai", "country": "AE"}],
                "id_details": [{"id_type": "4", "id_number": f"784198{i:09d}",
                                "issued_country": "AE", "date_of_expiry": "2030-01-01"}],
            },
        }
        for i in range(n)
    ]


def test_runtime_loop_is_uvloop_with_a_short_switch_interval(
    redis_url: str, default_switch_interval: None
) -> None:
    """Starting a worker runtime puts its loop on uvloop and cuts the GIL switch interval
    from Python's 5 ms to the runtime's; coroutines run on that loop."""
    runtime = Runtime(_settings(redis_url), redis_url)
    try:
        assert isinstance(runtime.loop, uvloop.Loop)
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
        assert runtime.run(asyncio.sleep(0, result=7), timeout=5) == 7
    finally:
        runtime.close()
    assert runtime.loop.is_closed()


def test_switch_interval_is_never_lengthened(default_switch_interval: None) -> None:
    """A process already switching more often than the runtime's interval keeps its own."""
    sys.setswitchinterval(0.0001)
    assert tune_switch_interval(0.0005) == pytest.approx(0.0001)
    assert tune_switch_interval(0.00005) == pytest.approx(0.00005)


def test_celery_config_compresses_messages(redis_url: str) -> None:
    """Every message the app sends is written by orjson and compressed with the project's
    zlib method; kombu's plain JSON is still accepted."""
    conf = celery_config(_settings(redis_url))
    assert conf["task_compression"] == COMPRESSION
    assert conf["task_serializer"] == SERIALIZER
    assert set(conf["accept_content"]) == {SERIALIZER, "json"}


def test_chunk_message_is_compressed_in_redis_and_decodes_intact(redis_url: str) -> None:
    """A 100-row chunk sits in the queue compressed, several times smaller than its JSON,
    and the consumer's side (kombu's message decoding) gets the exact message back."""
    queue = f"q{uuid.uuid4().hex[:8]}"
    app = make_app(_settings(redis_url, queue))
    message = chunk_message("2026-11-27-1540-abcdef", "c0", _rows(100))
    app.send_task(PROCESS_CHUNK, args=[message])

    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.lindex(queue, 0)
        assert isinstance(raw, bytes)
        envelope = json.loads(raw)
        assert envelope["headers"]["compression"] == "application/x-onboard-zlib"
        assert envelope["content-type"] == "application/x-onboard-json"
        assert len(raw) * 4 < len(json.dumps(message))

        with app.connection_for_read() as connection:
            delivered = connection.default_channel.basic_get(queue)
            assert delivered is not None
            args, kwargs, _ = delivered.decode()
            delivered.ack()
        assert args == [message] and kwargs == {}
        assert client.llen(queue) == 0
    finally:
        client.close()


def test_message_in_kombu_json_is_still_accepted(redis_url: str) -> None:
    """A chunk written with kombu's plain JSON (queued by an earlier version) decodes on the
    consumer's side as before."""
    queue = f"q{uuid.uuid4().hex[:8]}"
    app = make_app(_settings(redis_url, queue))
    message = chunk_message("2026-11-27-1540-abcdef", "c1", _rows(3))
    app.send_task(PROCESS_CHUNK, args=[message], serializer="json")
    with app.connection_for_read() as connection:
        delivered = connection.default_channel.basic_get(queue)
        assert delivered is not None
        assert delivered.content_type == "application/json"
        args, _, _ = delivered.decode()
        delivered.ack()
    assert args == [message]
