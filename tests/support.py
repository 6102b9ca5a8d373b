"""Setup the tests share: the sandbox's scenario ID numbers and a valid onboarding body, the
``onboard`` executable, the sandbox's credentials as settings or as a subprocess environment,
a private keyspace on the test Redis, ``onboard worker`` subprocesses and settings with one
running, polling with a deadline (:func:`poll_until`), generated inputs, report reading, and
for the rules tests a valid base row and a validator with a fixed "today"; and a
customer's keys (claim, "create sent", ledger) read straight from Redis.

Importable as ``support`` (``tests/conftest.py`` puts this directory on ``sys.path``); the
fixtures built on it live in ``tests/integration/conftest.py``. Test modules never import
each other: whatever two of them share lives here.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import redis

from pipeline.commands.run import run_file
from pipeline.core.masterdata import MasterData, load_master_data
from pipeline.core.settings import SAMPLE_DATA, PipelineSettings, Settings, ValidationSettings
from pipeline.rules.validation import Validator
from sandbox.testing import SandboxHandle, partner_env, sandbox_partner

# onboarding_body is re-exported: the integration tests import it from here.
from sandbox.testing import onboarding_body as onboarding_body
from workers.state import BatchStore, LedgerEntry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import make_customers
from polling import poll_until as poll_until

ONBOARD = str(Path(sys.executable).parent / "onboard")

# The sandbox's scenario ID numbers (the table in docs/architecture.md), by scenario.
EXISTING = "784198090000005"
NOT_SUBSCRIBED = "784198190000012"
LOOKUP_COMPLIANCE = "784198290000029"
LOOKUP_BLOCKED = "784198390000036"
LOOKUP_BAD_REQUEST = "784198490000043"
LOOKUP_INTERNAL_ERROR = "784198590000059"
LOOKUP_INTERNAL_ERROR_ONCE = "784198690000066"
BLOCKED = "784198790000073"
COMPLIANCE = "784198890000080"
INVALID_MASTER_DATA = "784198990000097"
MANDATORY_MISSING = "784199090000102"
CREATE_502 = "784199190000119"
CREATE_502_ONCE = "784199290000126"
CREATE_502_AFTER_COMMIT = "784199390000133"
SLOW = "784199490000140"
UPDATE_FAILURE = "784199590000156"
KYC_PENDING = "784199690000163"
AML_UNDER_INVESTIGATION = "784199790000170"
FRESH = "784199554586091"  # not a scenario: behaves normally


def sandbox_settings(
    redis_url: str, prefix: str, base_url: str, *, partner: Mapping[str, Any] | None = None,
    **pipeline: Any,
) -> Settings:
    """Settings on a test's Redis and key prefix (also the queue) and a sandbox."""
    return Settings(
        redis_url=redis_url,
        partner=sandbox_partner(base_url, **(partner or {})),
        pipeline=PipelineSettings.model_validate(
            {**pipeline, "key_prefix": prefix, "queue": prefix}
        ),
    )


def onboard_env(
    redis_url: str, prefix: str, base_url: str, *, log_level: str = "WARNING",
    partner: Mapping[str, Any] | None = None, **pipeline: Any,
) -> dict[str, str]:
    """Environment of an ``onboard`` subprocess with the same settings as
    :func:`sandbox_settings`, and none of the caller's own ``ONBOARD_*`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONBOARD_")}
    env.update(partner_env(base_url))
    env.update({"ONBOARD_REDIS_URL": redis_url, "ONBOARD_LOG_LEVEL": log_level})
    env.update({f"ONBOARD_PARTNER__{k.upper()}": str(v) for k, v in (partner or {}).items()})
    pipeline = {**pipeline, "key_prefix": prefix, "queue": prefix}
    env.update({f"ONBOARD_PIPELINE__{k.upper()}": str(v) for k, v in pipeline.items()})
    return env


@contextlib.contextmanager
def private_keyspace(redis_base_url: str, db: int, letter: str) -> Iterator[tuple[str, str]]:
    """A Redis URL on database ``db`` and a fresh key prefix (also the queue name) starting
    with ``letter``; every key under the prefix is deleted afterwards.

    Never database 15: the ``redis_url`` fixture flushes it around every test, which would
    wipe a batch that a worker of a concurrent test run still works on.
    """
    prefix = f"{letter}{uuid.uuid4().hex[:12]}"
    url = f"{redis_base_url}/{db}"
    try:
        yield url, prefix
    finally:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.delete(f"_kombu.binding.{prefix}")
        client.close()


@contextlib.contextmanager
def onboard_worker(
    env: Mapping[str, str], log: Path, concurrency: int = 2
) -> Iterator[subprocess.Popen[bytes]]:
    """An ``onboard worker`` subprocess logging to ``log``; stopped warmly (SIGTERM) at the
    end if still alive, killed if it does not stop within 30 s."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [ONBOARD, "worker", "--concurrency", str(concurrency)],
            env=dict(env), stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def generated_input(path: Path, rows: int, seed: int) -> Path:
    """Write ``rows`` valid generated customers to ``path``."""
    make_customers.write_csv(make_customers.generate(rows, 0.0, seed=seed), path)
    return path


def copy_sample(tmp: Path) -> Path:
    """A private copy of the sample file and its document scans under ``tmp/input``."""
    shutil.copytree(SAMPLE_DATA / "docs", tmp / "input" / "docs")
    target = tmp / "input" / "customers.csv"
    shutil.copy(SAMPLE_DATA / "customers.csv", target)
    return target


def read_report(path: Path) -> list[dict[str, str]]:
    """A report CSV's rows as dicts (BOM skipped)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def by_row(path: Path) -> dict[int, dict[str, str]]:
    """A report CSV's rows keyed by row number."""
    return {int(r["row_number"]): r for r in read_report(path)}


# -- a batch run through an ``onboard worker`` subprocess, then reworked ---------------------

# Pipeline knobs of the rerun and follow-up tests: small messages, few and quick retries,
# a rate that never holds them up.
WORKER_PIPELINE: dict[str, Any] = {
    "rows_per_message": 7, "max_attempts": 3, "backoff_base_seconds": 0.02,
    "backoff_max_seconds": 0.1, "rate_limit_per_second": 1000,
}


@contextlib.contextmanager
def settings_with_worker(
    redis_base_url: str, sandbox: SandboxHandle, tmp: Path
) -> Iterator[Settings]:
    """Reset ``sandbox``; settings (:data:`WORKER_PIPELINE`, state dir ``tmp/state``) on a
    fresh key prefix (also the queue) of database 13, with an ``onboard worker`` subprocess
    (concurrency 4, logging to ``tmp/worker.log``) consuming that queue while they are used."""
    sandbox.reset()
    with private_keyspace(redis_base_url, 13, "r") as (url, prefix):
        env = onboard_env(url, prefix, sandbox.base_url, **WORKER_PIPELINE)
        with onboard_worker(env, tmp / "worker.log", concurrency=4):
            yield sandbox_settings(
                url, prefix, sandbox.base_url, state_dir=tmp / "state", **WORKER_PIPELINE
            )


def run_to_end(
    settings: Settings, source: Path, out: Path
) -> tuple[str, dict[int, dict[str, str]]]:
    """Run ``source`` to the end on a worker already running; its batch id and report rows."""
    result = run_file(source, out_dir=out, settings=settings, worker=False, timeout=90)
    assert result.batch_id is not None and result.error is None, result.error
    return result.batch_id, by_row(out / result.batch_id / "report.csv")


# -- the local rules ------------------------------------------------------------------------

# The validation tests' "today": ages and expiry dates count from here.
VALIDATION_TODAY = date(2026, 6, 15)

# One valid row; each validation case mutates it and names the codes it expects.
BASE_ROW: dict[str, str] = {
    "channel": "BULK",
    "agent_location_id": "AGT-001",
    "first_name": "Amal",
    "last_name": "Haddad",
    "nationality": "AE",
    "date_of_birth": "1980-05-01",
    "country_of_birth": "AE",
    "country_of_residence": "AE",
    "gender": "F",
    "primary_mobile_number": "+971501234567",
    "email_id": "amal.haddad@example.com",
    "occupation_id": "1",
    "political_exposed_person": "N",
    "id_type": "4",
    "id_number": "784198090000005",
    "id_issued_country": "AE",
    "id_issued_on": "2020-01-01",
    "id_date_of_expiry": "2030-01-01",
    "address_type_id": "1",
    "address_city": "Dubai",
    "address_country": "AE",
}


@functools.cache
def sample_master_data() -> MasterData:
    """The sample master data, loaded once."""
    return load_master_data(SAMPLE_DATA / "master_data")


def make_validator(tmp: Path | None = None, **settings: object) -> Validator:
    """A validator on the sample master data with ``settings`` (ValidationSettings fields),
    today fixed at :data:`VALIDATION_TODAY`, document paths relative to ``tmp`` (else the
    working directory)."""
    return Validator(
        sample_master_data(),
        ValidationSettings(**settings),  # type: ignore[arg-type]
        base_dir=tmp or Path.cwd(),
        today=VALIDATION_TODAY,
    )


# A customer's keys are written only by the store's scripts (claim_create, hold_claim,
# release_claim, finish_row); the tests read what those left straight from the keys.
def claim_owner(store: BatchStore, id_type: str, id_number: str) -> str | None:
    """Who holds the customer's create claim (None: nobody), read from its key."""
    raw = store.r.get(store.keys.claim(id_type, id_number))
    return raw.decode() if raw else None


def create_sent(store: BatchStore, id_type: str, id_number: str) -> bool:
    """The customer's "create sent" marker (a create in doubt) is in Redis."""
    return bool(store.r.exists(store.keys.create_sent(id_type, id_number)))


def ledger_entry(store: BatchStore, id_type: str, id_number: str) -> LedgerEntry | None:
    """The customer's ledger entry as Redis holds it (None: not in the ledger)."""
    raw = store.r.get(store.keys.ledger(id_type, id_number))
    return LedgerEntry.from_json(raw) if raw else None
