"""Per-customer state and the token are scoped to the partner they were obtained from."""

from __future__ import annotations

from pipeline.core.settings import PartnerSettings
from workers.state import Keys


def test_scope_differs_by_host_and_client() -> None:
    """Another host or another client id is another partner; a trailing slash is not."""
    base = PartnerSettings(base_url="https://sandbox.example", client_id="bank")
    assert base.scope_id() == PartnerSettings(
        base_url="https://sandbox.example/", client_id="bank").scope_id()
    assert base.scope_id() != PartnerSettings(
        base_url="https://prod.example", client_id="bank").scope_id()
    assert base.scope_id() != PartnerSettings(
        base_url="https://sandbox.example", client_id="other").scope_id()


def test_ledger_claim_and_marker_keys_follow_the_scope() -> None:
    """A ledger filled against one partner is invisible under another partner's scope,
    while batch keys (outcomes, counters) stay shared."""
    sandbox, prod = Keys("onboard", "aaaa"), Keys("onboard", "bbbb")
    for name in ("ledger", "claim", "create_sent"):
        assert getattr(sandbox, name)("4", "784199554586091") != getattr(prod, name)(
            "4", "784199554586091")
    assert sandbox.rows("b1") == prod.rows("b1")
    assert "784199554586091" not in sandbox.ledger("4", "784199554586091")


def test_explicit_state_scope_wins() -> None:
    """An explicit state scope (the built-in sandbox's) is used whatever the port."""
    a = PartnerSettings(base_url="http://127.0.0.1:4001", state_scope="local-sandbox")
    b = PartnerSettings(base_url="http://127.0.0.1:4002", state_scope="local-sandbox")
    assert a.scope_id() == b.scope_id() == "local-sandbox"
