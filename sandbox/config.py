"""Every knob of the sandbox in one pydantic model, settable at start and at run time.

The field descriptions double as the ``--help`` text of ``python -m sandbox``, so a knob is
documented exactly once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"


class SandboxConfig(BaseModel):
    """The sandbox's knobs. Immutable: a run-time change builds a new object (``updated``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Credentials the token endpoint accepts.
    client_id: str = Field("sandbox-client", description="client_id the token endpoint accepts")
    client_secret: SecretStr = Field(
        SecretStr("sandbox-secret"), description="client_secret the token endpoint accepts"
    )
    username: str = Field("sandbox-user", description="username the password grant accepts")
    password: SecretStr = Field(
        SecretStr("sandbox-pass"), description="password the password grant accepts"
    )

    # Tokens.
    token_ttl: int = Field(7199, ge=1, description="access token lifetime in seconds")
    refresh_ttl: int = Field(7199, ge=1, description="refresh token lifetime in seconds")
    issue_refresh_tokens: bool = Field(
        True, description="include refresh_token in grants (the contract says it may be absent)"
    )

    # Pace.
    latency_ms: float = Field(0.0, ge=0.0, description="fixed latency added to business calls")
    jitter_ms: float = Field(0.0, ge=0.0, description="extra latency, uniform in [0, jitter_ms]")
    slow_ms: float = Field(1500.0, ge=0.0, description="extra wait for the 'slow' scenario ID")
    rps_limit: int = Field(
        0, ge=0, description="business calls per second (sliding 1 s window); more get 429; 0=off"
    )
    retry_after_s: int = Field(1, ge=0, description="Retry-After seconds sent with random 429s")

    # Random faults (probability per business call, drawn from the seeded generator).
    fault_502: float = Field(
        0.0, ge=0.0, le=1.0, description="onboard answers 502, nothing created"
    )
    fault_502_after_commit: float = Field(
        0.0, ge=0.0, le=1.0, description="onboard creates the customer, then answers 502"
    )
    fault_timeout: float = Field(
        0.0, ge=0.0, le=1.0, description="call hangs timeout_hang_s, then answers 502 (no create)"
    )
    timeout_hang_s: float = Field(
        35.0, ge=0.0, description="how long fault_timeout hangs; keep it above the client timeout"
    )
    fault_45006: float = Field(
        0.0, ge=0.0, le=1.0, description="lookup answers the body-level internal error 45006"
    )
    fault_429: float = Field(0.0, ge=0.0, le=1.0, description="call answers 429 with Retry-After")
    faults_on_token: bool = Field(
        False, description="apply latency, 429, 502 and timeout faults to the token endpoint too"
    )
    seed: int | None = Field(None, description="seed of the fault generator; unset = a random seed")

    # Data.
    master_data_dir: Path = Field(
        SAMPLE_DATA / "master_data", description="master-data directory used to check codes"
    )
    scenarios_file: Path = Field(
        SAMPLE_DATA / "scenarios.toml", description="scenario table keyed by ID number"
    )

    def updated(self, changes: dict[str, Any]) -> SandboxConfig:
        """Return a validated copy with ``changes`` applied; unknown knobs are an error."""
        merged: dict[str, Any] = dict(self)
        merged.update(changes)
        return SandboxConfig.model_validate(merged)

    def public(self) -> dict[str, Any]:
        """The knobs as JSON-ready values, secrets masked."""
        return self.model_dump(mode="json")
