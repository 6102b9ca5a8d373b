"""Keycloak-like token grants: password and refresh grants, rotation, expiry and revocation.

Pure bookkeeping: callers pass the clock (``now``, monotonic seconds), so tests can drive
expiry without waiting. Access tokens stay valid until they expire even after a refresh,
as Keycloak's signed tokens do; a refresh token is single use.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from sandbox.config import SandboxConfig


@dataclass(frozen=True, slots=True)
class Grant:
    """A successful grant: what the token endpoint returns."""

    access_token: str
    expires_in: int
    refresh_token: str | None
    refresh_expires_in: int
    scope: str
    session_state: str

    def body(self) -> dict[str, object]:
        """The token endpoint's 200 body, in Keycloak's key order."""
        body: dict[str, object] = {
            "access_token": self.access_token,
            "expires_in": self.expires_in,
        }
        if self.refresh_token is not None:
            body["refresh_expires_in"] = self.refresh_expires_in
            body["refresh_token"] = self.refresh_token
        body["token_type"] = "bearer"  # noqa: S105
        body["not-before-policy"] = 0
        body["session_state"] = self.session_state
        body["scope"] = self.scope
        return body


@dataclass(frozen=True, slots=True)
class GrantError:
    """A refused grant: HTTP status and Keycloak's error/description."""

    status: int
    error: str
    description: str


@dataclass(frozen=True, slots=True)
class _Refresh:
    expires_at: float
    scope: str
    session_state: str


class TokenStore:
    """Live access and refresh tokens of the sandbox."""

    def __init__(self) -> None:
        self._access: dict[str, float] = {}
        self._refresh: dict[str, _Refresh] = {}

    def grant(self, form: dict[str, str], config: SandboxConfig, now: float) -> Grant | GrantError:
        """Answer one token request (already-decoded form fields)."""
        grant_type = form.get("grant_type")
        if not grant_type:
            return GrantError(400, "invalid_request", "Missing form parameter: grant_type")
        if grant_type not in ("password", "refresh_token"):
            return GrantError(400, "unsupported_grant_type", "Unsupported grant_type")
        if form.get("client_id") != config.client_id or (
            form.get("client_secret") != config.client_secret.get_secret_value()
        ):
            return GrantError(401, "invalid_client", "Invalid client or Invalid client credentials")
        self._prune(now)
        if grant_type == "password":
            if form.get("username") != config.username or (
                form.get("password") != config.password.get_secret_value()
            ):
                # Keycloak answers a wrong user password with 401 invalid_grant.
                return GrantError(401, "invalid_grant", "Invalid user credentials")
            return self._issue(form.get("scope", ""), uuid.uuid4().hex, config, now)
        presented = form.get("refresh_token", "")
        # pop: a refresh token is single use whether or not it is still alive.
        previous = self._refresh.pop(presented, None)
        if previous is None or previous.expires_at <= now:
            return GrantError(400, "invalid_grant", "Invalid refresh token")
        return self._issue(previous.scope, previous.session_state, config, now)

    def _issue(self, scope: str, session: str, config: SandboxConfig, now: float) -> Grant:
        access = secrets.token_urlsafe(48)
        self._access[access] = now + config.token_ttl
        refresh: str | None = None
        if config.issue_refresh_tokens:
            refresh = secrets.token_urlsafe(48)
            self._refresh[refresh] = _Refresh(now + config.refresh_ttl, scope, session)
        return Grant(access, config.token_ttl, refresh, config.refresh_ttl, scope, session)

    def valid(self, access_token: str, now: float) -> bool:
        """True when the access token was issued, is not revoked and has not expired."""
        expires_at = self._access.get(access_token)
        if expires_at is None:
            return False
        if expires_at <= now:
            del self._access[access_token]
            return False
        return True

    def revoke_all(self) -> None:
        """Forget every access and refresh token."""
        self._access.clear()
        self._refresh.clear()

    def live(self, now: float) -> tuple[int, int]:
        """Counts of live access and refresh tokens."""
        self._prune(now)
        return len(self._access), len(self._refresh)

    def _prune(self, now: float) -> None:
        # Only grants call this, so its cost scales with tokens, never with business calls.
        for token in [t for t, at in self._access.items() if at <= now]:
            del self._access[token]
        for token in [t for t, r in self._refresh.items() if r.expires_at <= now]:
            del self._refresh[token]
