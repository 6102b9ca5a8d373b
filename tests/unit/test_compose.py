"""docker-compose.yml parses, and every service runs a command that really exists: an
``onboard`` subcommand of our CLI with options it accepts, or ``redis-server``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from pipeline.cli import app
from sandbox.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def services() -> dict[str, dict[str, Any]]:
    """The compose file's services."""
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    found: dict[str, dict[str, Any]] = document["services"]
    return found


def test_compose_file_parses_with_the_expected_services() -> None:
    """redis, sandbox and worker are there; every service has a command."""
    found = services()
    assert {"redis", "sandbox", "worker"} <= set(found)
    for name, service in found.items():
        assert isinstance(service.get("command"), list), name


@pytest.mark.parametrize("name", sorted(services()))
def test_every_service_command_exists_and_parses(name: str) -> None:
    """An onboard service names a real subcommand and its options parse; redis runs
    redis-server."""
    service = services()[name]
    program, *args = service["command"]
    if program == "redis-server":
        return
    assert program == "onboard", f"{name}: unknown program {program}"
    # Our image's entrypoint is `onboard`; the command spells it, so the entrypoint is reset.
    assert service.get("entrypoint") == [], name
    group: Any = typer.main.get_command(app)
    sub, *rest = args
    assert sub in group.commands, f"{name}: onboard has no command {sub!r}"
    if sub == "sandbox":
        build_parser().parse_args(rest)  # exits (SystemExit) on an unknown knob
        return
    command = group.commands[sub]
    with command.make_context(sub, list(rest)) as ctx:
        assert ctx.params is not None


def test_redis_is_durable_never_evicts_and_has_a_healthcheck() -> None:
    """The queue's Redis keeps an append-only file, refuses eviction, and reports health."""
    redis = services()["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert "redis-cli" in redis["healthcheck"]["test"]


def test_workers_reach_redis_and_scale() -> None:
    """The worker service uses the compose Redis and has no fixed name (scalable)."""
    worker = services()["worker"]
    assert worker["environment"]["ONBOARD_REDIS_URL"].startswith("redis://redis:")
    assert "container_name" not in worker
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
