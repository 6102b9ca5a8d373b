"""Rows whose message was lost (taken off the queue by a worker killed before kombu recorded
it as unacknowledged) are sent again: by ``onboard recover`` and by the follow loop of
``onboard run`` once the batch stalls. Losses are made deterministic by deleting messages
from the queue list before any worker starts."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from keyspace import IsolatedRedis
from support import (
    ONBOARD,
    generated_input,
    onboard_env,
    onboard_worker,
    poll_until,
    read_report,
    sandbox_settings,
)

from pipeline.batch.follow import follow_and_report
from pipeline.batch.inputs import InputSpec, new_batch_id
from pipeline.batch.recover import recover_batch
from pipeline.batch.submit import Queue, launch_batch
from pipeline.commands.report import report_batch
from pipeline.commands.setup import open_pipeline
from pipeline.commands.submit import submit
from pipeline.core.settings import Settings
from sandbox.testing import SandboxHandle, run_sandbox
from workers.state import UNACKED_KEY, BatchStore

ROWS = 60
PER_MESSAGE = 10


@pytest.fixture()
def client(isolated_redis: IsolatedRedis) -> Iterator[redis.Redis]:
    """A client on the test's isolated database."""
    c = redis.Redis.from_url(isolated_redis.url)
    yield c
    c.close()


def recover_cli(env: dict[str, str], batch_id: str) -> subprocess.CompletedProcess[str]:
    """Run ``onboard recover BATCH`` as a user would."""
    return subprocess.run(
        [ONBOARD, "recover", batch_id], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )


def assert_every_row_once(
    sandbox: SandboxHandle, batch_id: str, out: Path, settings: Settings
) -> None:
    """The report has each row once, all onboarded, and the sandbox created each once."""
    result = report_batch(batch_id, out_dir=out, settings=settings)
    assert result.exit_code == 0, result.summary
    got = read_report(out / batch_id / "report.csv")
    assert [int(r["row_number"]) for r in got] == list(range(2, ROWS + 2))
    assert {r["outcome"] for r in got} == {"onboarded"}
    stats = sandbox.stats()
    assert stats["creates"] == ROWS
    assert stats["duplicate_creates"] == 0 and stats["repeat_creates"] == 0


def test_recover_command_resends_only_rows_without_outcome(
    isolated_redis: IsolatedRedis, client: redis.Redis, tmp_path: Path
) -> None:
    """Half the messages of a batch are lost; a real worker finishes the other half, then
    ``onboard recover`` re-enqueues exactly the 30 rows with no outcome, the worker ends
    them, nothing is created twice; a second recover on the complete batch sends nothing."""
    source = generated_input(tmp_path / "customers.csv", ROWS, seed=31)
    url, prefix = isolated_redis.url, isolated_redis.prefix
    with run_sandbox() as sandbox:
        settings = sandbox_settings(url, prefix, sandbox.base_url, rows_per_message=PER_MESSAGE)
        env = onboard_env(url, prefix, sandbox.base_url, rows_per_message=PER_MESSAGE)
        submitted = submit(source, resume=False, settings=settings)
        batch_id = submitted.batch_id
        assert batch_id and submitted.summary and submitted.summary["valid"] == ROWS
        assert client.llen(prefix) == ROWS // PER_MESSAGE
        client.ltrim(prefix, 0, 2)  # three of the six messages are lost
        store = BatchStore(client, prefix=prefix)
        with onboard_worker(env, tmp_path / "worker.log"):
            poll_until(
                lambda: store.done_count(batch_id) == ROWS // 2 and store.queue_idle(prefix),
                30, "the surviving messages' rows",
            )
            assert not store.is_complete(batch_id)
            done = recover_cli(env, batch_id)
            assert done.returncode == 0, done.stderr
            assert f"{ROWS // 2:,} rows with no outcome re-enqueued" in done.stdout
            poll_until(lambda: store.is_complete(batch_id), 30, "the batch to complete")
        again = recover_cli(env, batch_id)
        assert again.returncode == 0, again.stderr
        assert "0 rows with no outcome re-enqueued" in again.stdout
        assert client.llen(prefix) == 0
        # The recovered rows went out under chunk ids of their own (fresh poison counters).
        chunks = {k.decode() for k in client.hkeys(store.keys.deliveries(batch_id))}
        assert sum(1 for c in chunks if c.startswith("r")) == 3
        assert_every_row_once(sandbox, batch_id, tmp_path / "out", settings)


def test_follow_loop_recovers_a_stalled_batch(
    isolated_redis: IsolatedRedis, client: redis.Redis, tmp_path: Path
) -> None:
    """Every message of a batch is lost before the worker starts; the follow loop of
    ``onboard run`` sees the stall (empty queue, nothing unacknowledged, no progress for
    the stall time), re-enqueues the rows itself and the batch ends with exit code 0."""
    source = generated_input(tmp_path / "customers.csv", ROWS, seed=32)
    url, prefix = isolated_redis.url, isolated_redis.prefix
    with run_sandbox() as sandbox:
        settings = sandbox_settings(
            url, prefix, sandbox.base_url, rows_per_message=PER_MESSAGE,
            recover_stall_seconds=1.5,
        )
        with open_pipeline(settings) as env:
            queue = Queue(env.app, env.store, env.settings)
            sub = launch_batch(InputSpec(source), queue)
            assert client.delete(prefix) == 1  # the whole queue list is lost
            env.start_worker(2)
            result = follow_and_report(queue, sub.batch_id, tmp_path / "out", timeout=30)
        assert result.exit_code == 0, (result.error, result.summary)
        assert_every_row_once(sandbox, sub.batch_id, tmp_path / "out2", settings)


def test_recover_command_rejects_unknown_batch(
    isolated_redis: IsolatedRedis, tmp_path: Path
) -> None:
    """``onboard recover`` of a batch the store does not know is a one-line error, exit 2."""
    env = onboard_env(isolated_redis.url, isolated_redis.prefix, "http://127.0.0.1:9")
    done = recover_cli(env, "2026-01-01-0000-nosuch")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: batch 2026-01-01-0000-nosuch: unknown (or expired) batch"


def test_queue_idle_sees_only_this_queues_unacked_messages(
    isolated_redis: IsolatedRedis, client: redis.Redis
) -> None:
    """A waiting message or an unacknowledged one of this queue makes it busy; an
    unacknowledged message of another queue does not."""
    queue = isolated_redis.prefix
    store = BatchStore(client, prefix=queue)
    assert store.queue_idle(queue)
    client.lpush(queue, b"{}")
    assert not store.queue_idle(queue)
    client.delete(queue)
    mine, other = f"{queue}-tag-mine", f"{queue}-tag-other"
    try:
        client.hset(UNACKED_KEY, other, json.dumps([{}, "x", f"{queue}-other"]))
        assert store.queue_idle(queue)
        client.hset(UNACKED_KEY, mine, json.dumps([{}, queue, queue]))
        assert not store.queue_idle(queue)
    finally:
        client.hdel(UNACKED_KEY, mine, other)


def test_recovery_of_a_rerun_batch_sends_only_its_own_rows(
    isolated_redis: IsolatedRedis, client: redis.Redis, tmp_path: Path
) -> None:
    """A rerun batch (every other row of its input, selection in the store) loses all its
    messages; recovery sends exactly its 30 rows, under their own row numbers, and none of
    the input rows outside the selection."""
    source = generated_input(tmp_path / "customers.csv", ROWS, seed=33)
    url, prefix = isolated_redis.url, isolated_redis.prefix
    select = {n: n for n in range(2, ROWS + 2, 2)}
    with run_sandbox() as sandbox:
        settings = sandbox_settings(url, prefix, sandbox.base_url, rows_per_message=PER_MESSAGE)
        with open_pipeline(settings) as env:
            batch_id = new_batch_id()
            env.store.save_selection(batch_id, select)
            queue = Queue(env.app, env.store, env.settings)
            launch_batch(InputSpec(source), queue, batch_id=batch_id, select=select)
            assert client.delete(prefix) == 1
            assert recover_batch(queue, batch_id) == len(select)
            env.start_worker(2)
            poll_until(lambda: env.store.is_complete(batch_id), 30, "the rerun batch to complete")
            recorded = sorted(int(k) for k in client.hkeys(env.store.keys.rows(batch_id)))
        assert recorded == sorted(select)
        stats = sandbox.stats()
        assert stats["creates"] == len(select)
        assert stats["duplicate_creates"] == 0 and stats["repeat_creates"] == 0
