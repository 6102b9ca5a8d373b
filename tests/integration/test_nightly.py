"""Nightly runs on real parts: an ``onboard submit`` subprocess SIGKILLed in the middle of
enqueuing, started again for the same file, continues the same batch; the queue then holds
every row exactly once, an ``onboard worker`` subprocess onboards them against the sandbox
with no duplicate create, and ``onboard status`` lists the batch."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import zlib
from pathlib import Path

import redis
from support import ONBOARD, generated_input, onboard_env, onboard_worker, poll_until

from pipeline.batch.nightly import find_unfinished
from pipeline.core.digest import file_sha256
from sandbox.testing import SandboxHandle, run_sandbox
from workers.state import BatchStore

ROWS = 1500


def env_for(url: str, prefix: str, sandbox: SandboxHandle) -> dict[str, str]:
    """Environment of the ``onboard`` subprocesses: shared Redis, sandbox, one row a message."""
    # One row per message: many messages, so the kill lands between two of them.
    return onboard_env(
        url, prefix, sandbox.base_url, rows_per_message=1, rate_limit_per_second=5000
    )


def queued_rows(client: redis.Redis, queue: str) -> list[int]:
    """Row numbers of every chunk message waiting in the queue (kombu's Redis list)."""
    rows: list[int] = []
    for raw in client.lrange(queue, 0, -1):
        envelope = json.loads(raw)
        body = base64.b64decode(envelope["body"])
        if envelope.get("headers", {}).get("compression"):
            # Messages may be compressed (workers.app.COMPRESSION); any zlib level decodes.
            body = zlib.decompress(body)
        args, _, _ = json.loads(body)
        rows += [int(r["row_number"]) for r in args[0]["rows"]]
    return rows


def test_killed_submit_resumes_and_enqueues_each_row_once(
    private_redis: tuple[str, str], tmp_path: Path
) -> None:
    """SIGKILL ``onboard submit`` mid-enqueue: the cursor counts exactly the messages in the
    queue; the same command again prints the same batch id and sends only the rest, so the
    queue holds each row once; a worker then gives every row one outcome, zero duplicate
    creates, and ``onboard status`` lists the batch as complete."""
    url, prefix = private_redis
    source = tmp_path / "nightly.csv"
    generated_input(source, ROWS, seed=5)
    client = redis.Redis.from_url(url)
    store = BatchStore(client, prefix=prefix)
    with run_sandbox() as sandbox:
        env = env_for(url, prefix, sandbox)
        first = subprocess.Popen([ONBOARD, "submit", str(source)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            def sending() -> bool:
                ids = store.recent_batches(1)
                return bool(ids) and int(
                    client.hget(store.keys.meta(ids[0]), "messages_enqueued") or 0
                ) >= 100
            # Polled often: the kill must land while the submit is still enqueuing.
            poll_until(sending, 60, "the first submit to be enqueuing", interval=0.002)
            first.send_signal(signal.SIGKILL)
        finally:
            first.wait()
        assert first.returncode == -signal.SIGKILL
        (batch_id,) = store.recent_batches()
        meta = store.get_meta(batch_id)
        assert meta is not None and meta.total_rows == 0
        cut = int(client.hget(store.keys.meta(batch_id), "messages_enqueued") or 0)
        assert 100 <= cut < ROWS
        assert client.hget(store.keys.meta(batch_id), "enqueue_done") is None
        assert client.llen(prefix) == cut
        assert find_unfinished(store, source, file_sha256(source)) == batch_id

        again = subprocess.run([ONBOARD, "submit", str(source)], env=env, capture_output=True,
                               text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == batch_id
        rows = queued_rows(client, prefix)
        assert len(rows) == ROWS
        assert sorted(rows) == list(range(2, ROWS + 2))
        assert int(client.hget(store.keys.meta(batch_id), "messages_enqueued") or 0) == ROWS
        assert store.get_meta(batch_id).total_rows == ROWS  # type: ignore[union-attr]
        assert find_unfinished(store, source, file_sha256(source)) is None

        with onboard_worker(env, tmp_path / "worker.log", concurrency=4):
            poll_until(lambda: store.is_complete(batch_id), 240, "the batch to complete")
        counts = store.counts(batch_id)
        assert counts[next(o for o in counts if o.value == "onboarded")] == ROWS
        assert client.hlen(store.keys.rows(batch_id)) == ROWS
        deliveries = {int(v) for v in client.hvals(store.keys.deliveries(batch_id))}
        assert client.hlen(store.keys.deliveries(batch_id)) == ROWS and deliveries == {1}
        stats = sandbox.stats()
        assert stats["creates"] == ROWS and stats["duplicate_creates"] == 0

        listing = subprocess.run([ONBOARD, "status"], env=env, capture_output=True, text=True,
                                 timeout=60)
        assert listing.returncode == 0, listing.stderr
        (line,) = [ln for ln in listing.stdout.splitlines() if ln.startswith(batch_id)]
        assert "nightly.csv" in line and "complete" in line
        assert f"{ROWS:,}/{ROWS:,}" in line and f"onboarded {ROWS:,}" in line
    client.close()
