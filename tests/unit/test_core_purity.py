"""The pure core stays pure: importing every module of ``pipeline.core`` loads no queue,
Redis, HTTP or dataframe library, and no other part of the project."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pipeline.core

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("celery", "kombu", "redis", "httpx", "aiohttp", "pandas")


def test_importing_the_core_loads_no_heavy_library_and_nothing_else_of_ours() -> None:
    """A fresh interpreter imports all of pipeline.core; none of celery, kombu, redis,
    httpx, aiohttp or pandas, and no project module outside the core, is then loaded."""
    names = [f"pipeline.core.{m.name}" for m in pkgutil.iter_modules(pipeline.core.__path__)]
    assert "pipeline.core.errors" in names and "pipeline.core.settings" in names
    script = (
        "import importlib, json, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded = json.loads(done.stdout)
    heavy = [m for m in loaded if m.split(".")[0] in HEAVY]
    ours = [
        m for m in loaded
        if m.split(".")[0] in {"pipeline", "workers", "sandbox"}
        and m not in {"pipeline", "pipeline.core"} and not m.startswith("pipeline.core.")
    ]
    assert heavy == []
    assert ours == []
