"""``onboard watch`` on the real pipeline: real Redis, a real worker process, the sandbox.

The watcher is its own process, so the crash test can kill it with SIGKILL mid-batch and
start it again; the worker and Redis live on, as they would in docker-compose.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from keyspace import IsolatedRedis
from support import poll_until

from sandbox.testing import CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME, run_sandbox
from workers.state import BatchStore

ROOT = Path(__file__).resolve().parents[2]
CUSTOMERS = ROOT / "sample_data" / "customers.csv"
DEADLINE = 90.0


@pytest.fixture()
def env(isolated_redis: IsolatedRedis) -> Iterator[dict[str, str]]:
    """Environment of the worker and watcher processes: the test's own keyspace and queue
    (a flush of the shared test database by a concurrent test run must not wipe the
    batch's claims and markers), the sandbox, a slow rate."""
    with run_sandbox(latency_ms=20) as sandbox:
        values = {k: v for k, v in os.environ.items() if not k.startswith("ONBOARD_")}
        values.update(isolated_redis.env())
        values.update({
            "ONBOARD_PARTNER__BASE_URL": sandbox.base_url,
            "ONBOARD_PARTNER__CLIENT_ID": CLIENT_ID,
            "ONBOARD_PARTNER__CLIENT_SECRET": CLIENT_SECRET,
            "ONBOARD_PARTNER__USERNAME": USERNAME,
            "ONBOARD_PARTNER__PASSWORD": PASSWORD,
            "ONBOARD_PARTNER__SCOPE": "sandbox",
            # Slow enough (about 5 s for the sample file) that the kill lands mid-batch.
            "ONBOARD_PIPELINE__RATE_LIMIT_PER_SECOND": "20",
            "ONBOARD_PIPELINE__BACKOFF_BASE_SECONDS": "0.05",
            "ONBOARD_WATCH__POLL_SECONDS": "0.05",
            "ONBOARD_WATCH__COMPLETION_POLL_SECONDS": "0.05",
            "ONBOARD_LOG_LEVEL": "WARNING",
        })
        values["_SANDBOX_URL"] = sandbox.base_url
        yield values


def onboard(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``onboard ARGS`` as a child process writing to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *args], env=env, cwd=ROOT,
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a child we started and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def drop(folder: Path, source: Path) -> None:
    """Deliver ``source`` into the inbox by rename (written elsewhere first, then moved in)."""
    (folder / "inbox").mkdir(parents=True, exist_ok=True)
    staged = folder / "upload.tmp"
    staged.write_bytes(source.read_bytes())
    st = staged.stat()
    os.utime(staged, ns=(st.st_atime_ns, st.st_mtime_ns - 60 * 10**9))
    os.rename(staged, folder / "inbox" / source.name)


def test_watcher_killed_mid_batch_resumes_and_the_batch_completes_once(
    env: dict[str, str], isolated_redis: IsolatedRedis, tmp_path: Path
) -> None:
    """SIGKILL the watcher mid-batch; the next one continues the same batch to one report."""
    import httpx

    folder = tmp_path / "drop"
    log = tmp_path / "processes.log"
    store = BatchStore(redis.Redis.from_url(isolated_redis.url), prefix=isolated_redis.prefix)
    worker = onboard(["worker", "--concurrency", "2"], env, log)
    watcher = onboard(["watch", str(folder)], env, log)
    try:
        drop(folder, CUSTOMERS)
        sidecar = folder / "processing" / "customers.csv.batch"
        batch_id = poll_until(
            lambda: sidecar.exists() and json.loads(sidecar.read_text())["batch_id"], DEADLINE,
            "sidecar",
        )

        def started() -> bool:
            state = store.batch_state(batch_id)
            return state is not None and state.done > 0

        poll_until(started, DEADLINE, "first rows done")
        watcher.send_signal(signal.SIGKILL)
        watcher.wait(10)
        state = store.batch_state(batch_id)
        assert state is not None and not state.complete, "the kill must land mid-batch"
        assert list((folder / "outbox").iterdir()) == []
        assert (folder / "processing" / "customers.csv").exists()

        watcher = onboard(["watch", str(folder)], env, log)
        report = folder / "outbox" / f"customers.{batch_id}.report.csv"
        poll_until(
            lambda: (folder / "done" / "customers.csv").exists(), DEADLINE, "the file in done/"
        )
        # The same content again, and a file the pipeline cannot use: both end in failed/.
        broken = tmp_path / "broken.csv"
        broken.write_text("id_type,id_number\n4,784198090000005,extra\n")
        drop(folder, broken)
        drop(folder, CUSTOMERS)
        failed = folder / "failed"
        poll_until(
            lambda: len(list(failed.glob("*.error.txt"))) == 2, DEADLINE, "two files in failed/"
        )
    finally:
        stop(watcher)
        stop(worker)
    assert report.exists(), log.read_text()
    with report.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    numbers = [int(r["row_number"]) for r in rows]
    assert len(numbers) == len(set(numbers)) == 52
    assert "pending" not in {r["outcome"] for r in rows}
    stats = httpx.get(f"{env['_SANDBOX_URL']}/_sandbox/stats").json()
    onboarded = sum(r["outcome"] == "onboarded" for r in rows)
    assert onboarded > 0
    assert stats["duplicate_creates"] == 0
    summary = json.loads((folder / "outbox" / f"customers.{batch_id}.summary.json").read_text())
    assert summary["complete"] is True
    assert summary["reports"][0].endswith(f"customers.{batch_id}.report.csv")
    assert sorted(os.listdir(folder / "processing")) == []
    duplicate = (failed / "customers.csv.error.txt").read_text()
    assert f"batch {batch_id}" in duplicate and duplicate.count("\n") == 1
    unusable = (failed / "broken.csv.error.txt").read_text()
    assert unusable.startswith("broken.csv: ") and unusable.count("\n") == 1
    assert store.recent_batches() == [batch_id], "neither failed file opened a batch"


def test_watch_on_a_file_instead_of_a_folder_is_one_line_exit_2(tmp_path: Path) -> None:
    """A drop folder that is a file is a user mistake: exit code 2 and one line, no traceback."""
    not_a_folder = tmp_path / "drop"
    not_a_folder.write_text("x")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "watch", str(not_a_folder), "--once"],
        env=dict(os.environ), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith(f"error: {not_a_folder}: not a directory")


def test_runner_continues_a_cut_short_enqueue_without_sending_a_message_twice(
    isolated_redis: IsolatedRedis, tmp_path: Path
) -> None:
    """A batch whose enqueue was cut short (what a watcher killed mid-submit leaves: the
    cursor at 3 messages, no ``enqueue_done``) is continued by the runner's ``submit``: only
    the remaining messages go out, every chunk is delivered once, the batch completes and
    no customer is created twice."""
    from support import copy_sample, sandbox_settings

    from pipeline.batch.runner import PipelineRunner
    from workers.embedded import in_process_worker
    from workers.tasks import close_runtime, make_worker_app

    url, prefix = isolated_redis.url, isolated_redis.prefix
    source = copy_sample(tmp_path)
    client = redis.Redis.from_url(url)
    store = BatchStore(client, prefix=prefix)
    with run_sandbox() as sandbox:
        settings = sandbox_settings(
            url, prefix, sandbox.base_url, rows_per_message=5, backoff_base_seconds=0.05,
        )
        app = make_worker_app(settings, broker_url=url, redis_url=url)
        try:
            runner = PipelineRunner(app=app, store=store, settings=settings)
            batch_id = runner.open_batch(source)
            runner.submit(batch_id, source)
            meta = store.keys.meta(batch_id)
            sent = int(client.hget(meta, "messages_enqueued") or 0)
            assert sent > 3 and client.llen(prefix) == sent
            # Cut short after three messages: kombu pushes on the left, so the three oldest
            # are the rightmost.
            client.ltrim(prefix, -3, -1)
            client.hset(meta, mapping={"messages_enqueued": 3, "total_rows": 0})
            client.hdel(meta, "enqueue_done")
            assert not store.batch_state(batch_id).complete  # type: ignore[union-attr]

            runner.submit(batch_id, source)
            assert client.llen(prefix) == sent
            assert int(client.hget(meta, "messages_enqueued") or 0) == sent
            with in_process_worker(app, concurrency=2):
                poll_until(
                    lambda: store.batch_state(batch_id).complete,  # type: ignore[union-attr]
                    DEADLINE, "the batch to complete",
                )
        finally:
            close_runtime(app)
        poll_until(
            lambda: sandbox.stats()["in_flight"] == 0, DEADLINE,
            "the partner to finish every call",
        )
        stats = sandbox.stats()
    deliveries = [int(v) for v in client.hvals(store.keys.deliveries(batch_id))]
    client.close()
    assert sorted(deliveries) == [1] * sent
    assert stats["creates"] > 0 and stats["duplicate_creates"] == 0


def test_scans_of_a_dropped_file_are_found_in_the_documents_folder(
    isolated_redis: IsolatedRedis, tmp_path: Path
) -> None:
    """A file running from ``processing/`` finds the scans its rows name under the drop
    folder's ``documents/``: as many rows are valid as when the scans sit next to the file,
    whereas resolved next to the file in ``processing/`` they would be missing."""
    import shutil

    from support import copy_sample, sandbox_settings

    from pipeline.batch.runner import PipelineRunner
    from pipeline.core.outcomes import Outcome
    from pipeline.dropfolder.layout import Layout
    from workers.tasks import close_runtime, make_worker_app

    url, prefix = isolated_redis.url, isolated_redis.prefix
    beside = copy_sample(tmp_path)  # input/customers.csv with input/docs/...
    layout = Layout(tmp_path / "drop")
    layout.create()
    shutil.copytree(beside.parent / "docs", layout.documents / "docs")
    dropped = layout.processing / beside.name
    shutil.copy(beside, dropped)
    client = redis.Redis.from_url(url)
    store = BatchStore(client, prefix=prefix)
    settings = sandbox_settings(url, prefix, "http://127.0.0.1:9", rows_per_message=5)
    app = make_worker_app(settings, broker_url=url, redis_url=url)
    try:
        def invalid(path: Path, documents: Path | None) -> tuple[int, str]:
            runner = PipelineRunner(app=app, store=store, settings=settings,
                                    documents_dir=documents)
            batch_id = runner.open_batch(path)
            runner.submit(batch_id, path)
            codes = " ".join(r.error_code for r in store.iter_rows(batch_id))
            return store.counts(batch_id).get(Outcome.INVALID, 0), codes

        expected, _ = invalid(beside, None)
        found, _ = invalid(dropped, layout.documents)
        lost, codes = invalid(dropped, None)
    finally:
        close_runtime(app)
        client.close()
    assert found == expected
    assert lost > expected and "file_missing" in codes
