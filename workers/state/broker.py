"""The one place that knows how kombu's Redis transport lays out a Celery queue.

kombu keeps these structures as an implementation detail; reading them directly (to tell
whether a queue is idle, or to ride a counter on a publish) breaks silently when kombu
changes them, so all such knowledge sits here, small and easy to check against a new kombu.
"""

from __future__ import annotations

import json
from typing import Any, cast

import redis

# kombu's Redis transport keeps a queue's messages of priority p > 0 in "<queue>\x06\x16<p>"
# and every delivered-but-unacknowledged message (of all queues) in one hash.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
UNACKED_KEY = "unacked"


def queue_idle(client: redis.Redis, queue: str) -> bool:
    """No message of ``queue`` waits in Redis and none is delivered but unacknowledged."""
    lists = [queue, *(f"{queue}{_PRIORITY_SEP}{p}" for p in _PRIORITY_STEPS)]
    pipe = client.pipeline(transaction=False)
    for name in lists:
        pipe.llen(name)
    if any(cast(list[int], pipe.execute())):
        return False
    # Each value is JSON [message, exchange, routing key]; our messages route by queue.
    for _, value in client.hscan_iter(UNACKED_KEY, count=200):
        try:
            routing_key = json.loads(value)[2]
        except (ValueError, IndexError, TypeError):
            continue
        if routing_key == queue:
            return False
    return True


def publish_counted(
    app: Any, producer: Any, task: str, args: list[Any], *, counter: tuple[str, str, int] | None,
) -> bool:
    """Send one task message; with ``counter`` (hash key, field, value), write that field in
    the same pipeline write as the message (kombu's Redis publish batch).

    True when the producer had such a pipeline (the counter, if any, rode with the message);
    False when it had none, and the caller must write the counter itself.
    """
    pipe = None
    with producer.batch(max_size=64) as batch:
        app.send_task(task, args=args, producer=producer)
        pipe = getattr(getattr(batch.state, "session", None), "pipeline", None)
        if pipe is not None and counter is not None:
            pipe.hset(*counter)
    return pipe is not None
