"""The embedded Redis and in-process worker: persistence, stale leftovers, kombu, a consumer."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from kombu import Connection
from support import poll_until

from pipeline.core.settings import Settings
from workers.app import make_app
from workers.embedded import (
    EmbeddedRedisError,
    _start,
    embedded_redis,
    in_process_worker,
)


def test_data_survives_a_restart_with_the_same_state_dir(tmp_path: Path) -> None:
    """Write, stop, start again on the same state dir: the data is still there."""
    state = tmp_path / "state"
    with embedded_redis(state, persist=True) as server:
        client = redis.Redis.from_url(server.redis_url)
        client.set("ledger-probe", "kept")
        client.close()
    assert not server.socket_path.exists()
    with embedded_redis(state, persist=True) as again:
        client = redis.Redis.from_url(again.redis_url)
        assert client.get("ledger-probe") == b"kept"
        client.close()


def test_without_persist_nothing_is_kept(tmp_path: Path) -> None:
    """persist=False keeps no data across restarts."""
    state = tmp_path / "state"
    with embedded_redis(state, persist=False) as server:
        redis.Redis.from_url(server.redis_url).set("k", "v")
    with embedded_redis(state, persist=False) as again:
        assert redis.Redis.from_url(again.redis_url).get("k") is None


def test_temp_state_dir_is_removed_afterwards() -> None:
    """With no state dir the server lives in a temp dir that is gone after the stop."""
    with embedded_redis(None) as server:
        assert redis.Redis.from_url(server.redis_url).ping()
        directory = server.state_dir
    assert not directory.exists()


def test_stale_socket_and_pid_file_from_a_crash_are_cleaned(tmp_path: Path) -> None:
    """A leftover socket file and a pid file naming a dead process do not block a start."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "redis.sock").write_text("")
    (state / "redis.pid").write_text("999999\n")
    with embedded_redis(state) as server:
        assert redis.Redis.from_url(server.redis_url).ping()


def test_orphaned_server_is_stopped_saving_its_data(tmp_path: Path) -> None:
    """A server a killed run left behind is shut down (saved) and replaced by ours."""
    state = tmp_path / "state"
    state.mkdir()
    orphan = _start(state, state / "redis.sock", state / "redis.pid", True, False)
    redis.Redis(unix_socket_path=str(state / "redis.sock")).set("from-orphan", "1")
    with embedded_redis(state) as server:
        assert server.pid != orphan.pid
        assert orphan.wait(timeout=10) == 0
        assert redis.Redis.from_url(server.redis_url).get("from-orphan") == b"1"


def test_two_runs_cannot_share_a_state_dir(tmp_path: Path) -> None:
    """A second run on a state dir in use is refused with a clear error."""
    state = tmp_path / "state"
    with (
        embedded_redis(state),
        pytest.raises(EmbeddedRedisError, match="in use"),
        embedded_redis(state),
    ):
        pass


def test_kombu_publishes_and_consumes_through_the_broker_url() -> None:
    """kombu's redis transport reaches the private server through its socket URL."""
    with embedded_redis(None) as server, Connection(server.broker_url) as conn:
        queue = conn.SimpleQueue("probe")
        queue.put({"row": 7})
        message = queue.get(timeout=5)
        assert message.payload == {"row": 7}
        message.ack()
        queue.close()


def test_in_process_worker_really_consumes_tasks() -> None:
    """A task sent to the queue runs in the embedded worker and writes to Redis."""
    with embedded_redis(None) as server:
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        app = make_app(settings, broker_url=server.broker_url)
        url = server.redis_url

        @app.task(name="probe.write")
        def write(key: str) -> None:
            redis.Redis.from_url(url).set(key, "done")

        client = redis.Redis.from_url(url)
        with in_process_worker(app, concurrency=2):
            write.delay("probe-key")
            poll_until(
                lambda: client.get("probe-key") is not None, 10, "the task to run",
                interval=0.02,
            )
        # Stopped: a task sent now stays on the queue.
        write.delay("after-stop")
        assert client.llen("onboard") == 1
        assert client.get("after-stop") is None


def test_long_state_dir_path_still_gets_a_socket(tmp_path: Path) -> None:
    """A state dir too long for a unix socket path still works; data persists there."""
    state = tmp_path / ("deep-" * 20) / "state"
    with embedded_redis(state, persist=True) as server:
        assert len(str(state / "redis.sock")) > 108
        redis.Redis.from_url(server.redis_url).set("k", "v")
    with embedded_redis(state, persist=True) as again:
        assert redis.Redis.from_url(again.redis_url).get("k") == b"v"
