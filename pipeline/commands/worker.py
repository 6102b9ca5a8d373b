"""``onboard worker``: a Celery worker on the shared Redis; start any number, anywhere."""

from __future__ import annotations

import os

from pipeline.commands.setup import command, load_settings, shared_app
from pipeline.core.errors import ExitCode
from pipeline.core.results import CommandResult
from pipeline.core.settings import Settings


@command
def run_worker(concurrency: int, *, settings: Settings | None = None) -> CommandResult:
    """Run a Celery worker (threads pool, ``concurrency`` chunks in progress) until stopped."""
    from workers.tasks import close_runtime

    settings = settings or load_settings()
    _, app = shared_app(settings, "worker")
    try:
        app.worker_main([
            "worker", "--pool=threads", f"--concurrency={concurrency}",
            f"--queues={settings.pipeline.queue}", f"--hostname=onboard-{os.getpid()}@%h",
            "--loglevel=WARNING", "--without-gossip", "--without-mingle",
            "--without-heartbeat",
        ])
    finally:
        close_runtime(app)
    return CommandResult(ExitCode.DONE)
