"""Typed settings read once at the edge from ``ONBOARD_*`` environment variables and ``.env``.

Nested partner settings use a double underscore: ``ONBOARD_PARTNER__BASE_URL``. Secrets are
``SecretStr`` so that a settings object can be logged or printed without leaking them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"


class PartnerSettings(BaseModel):
    """How to reach and authenticate with DRAP. Paths are settings because the public
    contract marks some of them as assumed."""

    base_url: str = "http://127.0.0.1:8900"
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    username: str = ""
    password: SecretStr = SecretStr("")
    scope: str = ""
    token_path: str = "/auth/realms/cdp/protocol/openid-connect/token"  # noqa: S105
    lookup_path: str = "/caas/api/v2/customer/validate"
    onboard_path: str = "/caas-lcm/api/v1/CAAS/onBoarding/customer"
    status_path: str = "/caas/api/v2/customer/{ecrn}"
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    write_timeout: float = 30.0
    pool_timeout: float = 30.0
    verify_tls: bool = True
    max_connections: int = 100
    # Refresh this long before expiry, or this fraction of the lifetime for short tokens,
    # whichever is smaller, so no request carries a token that dies in flight.
    refresh_skew_seconds: float = 60.0
    refresh_skew_fraction: float = 0.2
    # "aiohttp": the business calls go straight to aiohttp (wrapping each call in an httpx
    # request and response cost more CPU than aiohttp itself); "httpx": httpx's own pool,
    # which stalls far below the partner's rate at 100 requests in flight (encode/httpx#3215).
    http_transport: Literal["httpx", "aiohttp"] = "aiohttp"
    # A token refresher holds the shared Redis lock at most this long (longer than a token
    # call can take), so a refresher that dies never blocks the others for good.
    token_lock_seconds: float = 15.0

    # Overrides the partner identity below; `onboard run --sandbox` sets it because its
    # sandbox gets a new port every run yet stands for one partner across invocations.
    state_scope: str = ""

    def scope_id(self) -> str:
        """Short stable id of *which partner* we talk to (host and client), so per-customer
        state and the cached token from one partner (say DRAP's sandbox host) are never used
        against another (production)."""
        if self.state_scope:
            return self.state_scope
        raw = f"{self.base_url.rstrip('/')}\x1f{self.client_id}".encode()
        return hashlib.blake2b(raw, digest_size=6).hexdigest()

    def missing(self) -> list[str]:
        """Names of the settings a real (non-sandbox) run cannot do without."""
        required = {
            "client_id": self.client_id,
            "client_secret": self.client_secret.get_secret_value(),
            "username": self.username,
            "password": self.password.get_secret_value(),
        }
        return [f"ONBOARD_PARTNER__{name.upper()}" for name, value in required.items() if not value]


# The partner's mandatory fields (assumed in docs/partner-api.md, so kept in this one place and
# overridable with ONBOARD_VALIDATION__MANDATORY_COLUMNS='["channel", ...]'). The sandbox
# states the partner's side independently (sandbox/checks.py); a test keeps them equal.
MANDATORY_COLUMNS: tuple[str, ...] = (
    "channel",
    "agent_location_id",
    "first_name",
    "last_name",
    "nationality",
    "date_of_birth",
    "country_of_birth",
    "country_of_residence",
    "gender",
    "primary_mobile_number",
    "occupation_id",
    "address_type_id",
    "address_city",
    "address_country",
    "id_type",
    "id_number",
    "id_issued_country",
    "id_date_of_expiry",
)


class ValidationSettings(BaseModel):
    """Knobs of the local rules."""

    master_data_dir: Path = SAMPLE_DATA / "master_data"
    min_age_years: int = 18
    day_first_dates: bool = False
    max_document_bytes: int = 5 * 1024 * 1024
    mandatory_columns: tuple[str, ...] = MANDATORY_COLUMNS


def _default_state_dir() -> Path:
    """Per-user state directory (XDG) for the embedded Redis's data."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "drap-onboard"


class PipelineSettings(BaseModel):
    """Knobs of the queue, the per-customer flow, the rate limit and the Redis state.

    Nested as ``ONBOARD_PIPELINE__<NAME>``.
    """

    # Every Redis key the pipeline writes expires after this long (batches, rows, ledger).
    state_ttl_seconds: int = Field(default=14 * 24 * 3600, gt=0)
    key_prefix: str = "onboard"
    queue: str = "onboard"
    rows_per_message: int = Field(default=100, gt=0)
    # Rows of one chunk processed concurrently inside one task.
    worker_concurrency: int = Field(default=100, gt=0)
    # Global partner request rate shared by every worker on every machine (requests/s).
    rate_limit_per_second: float = Field(default=50.0, gt=0)
    rate_limit_burst: int = Field(default=1, ge=1)
    # Partner requests in flight at once, per worker process.
    max_in_flight: int = Field(default=100, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_seconds: float = Field(default=0.5, ge=0)
    backoff_max_seconds: float = Field(default=30.0, ge=0)
    # A create claim held by a dead worker frees itself after this long.
    claim_ttl_seconds: int = Field(default=120, gt=0)
    # Redis redelivers an unacknowledged message after this long; every time limit and
    # retry countdown stays far below it so a slow task is never run twice at once.
    visibility_timeout_seconds: int = Field(default=3600, gt=0)
    # A chunk's rows run concurrently, so a chunk takes as long as its slowest row. Worst
    # case with the defaults: 5 attempts x (lookup and create each up to the 95 s of partner
    # timeouts + a 120 s claim hold after a create with no answer + 30 s backoff) = 1,700 s;
    # the limits sit above that (a chunk cut off mid-row is retried, then becomes poison)
    # and below half the visibility timeout.
    task_soft_time_limit_seconds: int = Field(default=1750, gt=0)
    task_time_limit_seconds: int = Field(default=1790, gt=0)
    # Deliveries of one chunk before it counts as poison and its rows become failed.
    max_deliveries: int = Field(default=3, ge=1)
    # A fully enqueued batch with no new outcome for this long, an empty queue and nothing
    # unacknowledged has lost messages: the follow loop re-enqueues its rows with no outcome.
    recover_stall_seconds: float = Field(default=60.0, gt=0)
    # Embedded Redis (used when ONBOARD_REDIS_URL is unset).
    state_dir: Path = Field(default_factory=_default_state_dir)
    embedded_persist: bool = True


class Settings(BaseSettings):
    """All settings of one run."""

    model_config = SettingsConfigDict(
        env_prefix="ONBOARD_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    partner: PartnerSettings = Field(default_factory=PartnerSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    redis_url: str | None = None
    # Unset: each command's own default (WARNING for commands with a progress display,
    # INFO for ``onboard worker``, which logs one line per row).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        """Level names in any case (``info`` as well as ``INFO``); empty means unset."""
        if isinstance(value, str):
            return value.strip().upper() or None
        return value
