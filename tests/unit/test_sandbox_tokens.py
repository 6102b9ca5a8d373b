"""Token bookkeeping with an explicit clock: grants, rotation, expiry, revocation."""

from __future__ import annotations

import pytest

from sandbox.config import SandboxConfig
from sandbox.tokens import Grant, GrantError, TokenStore

CONFIG = SandboxConfig(token_ttl=10, refresh_ttl=20)


def password(**overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "password",
        "client_id": "sandbox-client",
        "client_secret": "sandbox-secret",
        "username": "sandbox-user",
        "password": "sandbox-pass",
        "scope": "api://x/customer",
    }
    form.update(overrides)
    return form


def refresh(token: str | None) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "client_id": "sandbox-client",
        "client_secret": "sandbox-secret",
        "refresh_token": token or "",
    }


def granted(result: Grant | GrantError) -> Grant:
    assert isinstance(result, Grant), result
    return result


def test_access_token_lives_exactly_its_ttl() -> None:
    """An access token is valid before now + token_ttl and invalid from then on."""
    store = TokenStore()
    grant = granted(store.grant(password(), CONFIG, now=100.0))
    assert grant.expires_in == 10
    assert store.valid(grant.access_token, 109.9)
    assert not store.valid(grant.access_token, 110.0)
    assert not store.valid(grant.access_token, 105.0)  # expired tokens are forgotten


def test_refresh_rotates_and_keeps_scope_and_session() -> None:
    """A refresh gives a new pair with the same scope and session; the old refresh token is
    dead while the old access token lives on."""
    store = TokenStore()
    first = granted(store.grant(password(), CONFIG, now=0.0))
    second = granted(store.grant(refresh(first.refresh_token), CONFIG, now=5.0))
    assert second.refresh_token != first.refresh_token
    assert (second.scope, second.session_state) == (first.scope, first.session_state)
    reuse = store.grant(refresh(first.refresh_token), CONFIG, now=6.0)
    assert reuse == GrantError(400, "invalid_grant", "Invalid refresh token")
    assert store.valid(first.access_token, 6.0)
    assert store.valid(second.access_token, 14.0)


def test_expired_refresh_token_is_invalid_grant() -> None:
    """A refresh token presented at or after its expiry gets 400 invalid_grant."""
    store = TokenStore()
    first = granted(store.grant(password(), CONFIG, now=0.0))
    result = store.grant(refresh(first.refresh_token), CONFIG, now=20.0)
    assert isinstance(result, GrantError)
    assert (result.status, result.error) == (400, "invalid_grant")


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        (password(client_secret="x"), (401, "invalid_client")),
        (refresh("whatever") | {"client_id": "x"}, (401, "invalid_client")),
        (password(password="x"), (401, "invalid_grant")),
        (password(grant_type="client_credentials"), (400, "unsupported_grant_type")),
        ({"client_id": "sandbox-client"}, (400, "invalid_request")),
        (refresh(None), (400, "invalid_grant")),
    ],
)
def test_refusals_follow_keycloak(form: dict[str, str], expected: tuple[int, str]) -> None:
    """Each kind of bad token request gets Keycloak's status and error code."""
    result = TokenStore().grant(form, CONFIG, now=0.0)
    assert isinstance(result, GrantError)
    assert (result.status, result.error) == expected


def test_revoke_all_kills_every_token() -> None:
    """After revoke_all neither access nor refresh tokens work."""
    store = TokenStore()
    grant = granted(store.grant(password(), CONFIG, now=0.0))
    store.revoke_all()
    assert not store.valid(grant.access_token, 1.0)
    assert isinstance(store.grant(refresh(grant.refresh_token), CONFIG, now=1.0), GrantError)
    assert store.live(1.0) == (0, 0)


def test_grants_prune_expired_tokens() -> None:
    """Expired tokens are dropped at the next grant, so memory follows live tokens only."""
    store = TokenStore()
    for second in range(5):
        store.grant(password(), CONFIG, now=float(second))
    assert store.live(4.0) == (5, 5)
    store.grant(password(), CONFIG, now=100.0)
    assert store.live(100.0) == (1, 1)


def test_body_omits_refresh_fields_without_refresh_token() -> None:
    """With issue_refresh_tokens off the body has no refresh_token or refresh_expires_in."""
    config = CONFIG.updated({"issue_refresh_tokens": False})
    grant = granted(TokenStore().grant(password(), config, now=0.0))
    assert grant.refresh_token is None
    assert "refresh_token" not in grant.body()
    assert "refresh_expires_in" not in grant.body()
