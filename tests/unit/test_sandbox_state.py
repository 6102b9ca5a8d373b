"""The sandbox's business rules without HTTP: seeded faults, the rate cap, run-time
reconfiguration and the scenario-driven answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.core.masterdata import MasterDataError
from sandbox.config import SandboxConfig
from sandbox.state import NO_FAULTS, Faults, OnboardRequest, Reply, SandboxState


def body(id_number: str, **extra: object) -> bytes:
    return json.dumps(
        {
            "channel": "B", "agent_location_id": "A", "first_name": "T", "last_name": "P",
            "nationality": "AE", "date_of_birth": "1990-01-01", "country_of_birth": "AE",
            "country_of_residence": "AE", "gender": "M", "primary_mobile_number": "+97150",
            "occupation_id": "1",
            "address_list": [{"address_type_id": "1", "city": "D", "country": "AE"}],
            "id_details": [{"id_type": "4", "id_number": id_number, "issued_country": "AE",
                            "date_of_expiry": "2031-01-01"}],
            **extra,
        }
    ).encode()  # fmt: skip


def create(state: SandboxState, id_number: str, faults: Faults = NO_FAULTS) -> Reply:
    request = state.parse_onboard(body(id_number))
    assert isinstance(request, OnboardRequest)
    return state.onboard(request, faults)


def test_same_seed_draws_the_same_faults() -> None:
    """Two states with the same seed and rates draw identical fault sequences; reset
    restarts the sequence."""
    config = SandboxConfig(seed=3, fault_429=0.3, fault_45006=0.5)
    first, second = SandboxState(config), SandboxState(config)
    draws = [first.draw_faults("lookup") for _ in range(50)]
    assert draws == [second.draw_faults("lookup") for _ in range(50)]
    assert any(f.too_many for f in draws) and any(f.internal_error for f in draws)
    first.reset()
    assert [first.draw_faults("lookup") for _ in range(50)] == draws


def test_faults_only_apply_to_their_endpoints() -> None:
    """502 faults never hit a lookup and 45006 never hits an onboarding."""
    state = SandboxState(
        SandboxConfig(seed=1, fault_502=1.0, fault_502_after_commit=1.0, fault_45006=1.0)
    )
    lookup = state.draw_faults("lookup")
    onboard = state.draw_faults("onboard")
    assert (lookup.bad_gateway, lookup.after_commit, lookup.internal_error) == (False, False, True)
    assert (onboard.bad_gateway, onboard.after_commit, onboard.internal_error) == (
        True,
        True,
        False,
    )


def test_rate_cap_admits_limit_per_second() -> None:
    """With rps_limit 3, the fourth call within a second gets 429 with Retry-After, and
    calls are admitted again once the window has moved on."""
    state = SandboxState(SandboxConfig(rps_limit=3))
    answers = [state.rate_limited("/caas/x", t) for t in (0.0, 0.1, 0.2, 0.3)]
    assert answers[:3] == [None, None, None]
    limited = answers[3]
    assert limited is not None and limited.status == 429
    assert limited.headers == {"Retry-After": "1"}
    assert state.rate_limited("/caas/x", 1.05) is None
    assert state.snapshot()["rate_limited"] == 1


def test_reconfigure_rejects_bad_values_and_keeps_running_config(tmp_path: Path) -> None:
    """A bad knob value or an unusable master-data directory leaves the config unchanged."""
    state = SandboxState(SandboxConfig())
    with pytest.raises(ValidationError):
        state.reconfigure({"fault_429": 2})
    with pytest.raises(ValidationError):
        state.reconfigure({"no_such": 1})
    with pytest.raises(MasterDataError):
        state.reconfigure({"latency_ms": 9, "master_data_dir": str(tmp_path)})
    assert state.config == SandboxConfig()


def test_new_scenario_file_replaces_the_table(tmp_path: Path) -> None:
    """Switching to another scenario file at run time applies its cases at once."""
    state = SandboxState(SandboxConfig())
    custom = tmp_path / "s.toml"
    custom.write_text('["P1234567"]\ncase = "blocked"\n', encoding="utf-8")
    state.reconfigure({"scenarios_file": str(custom)})
    assert create(state, "P1234567").status == 406
    assert create(state, "784198790000073").status == 200
    assert len(state.customers) == 1  # no "existing" entry in this table


def test_after_commit_fault_creates_then_answers_502() -> None:
    """The after-commit fault stores the customer before the 502."""
    state = SandboxState(SandboxConfig())
    reply = create(state, "784199012345678", Faults(after_commit=True))
    assert reply.status == 502
    assert state.customers.by_id("4:784199012345678") is not None
    assert state.snapshot()["creates"] == 1


def test_update_of_existing_customer_keeps_its_statuses() -> None:
    """An update of a KYC-pending customer keeps customer_status and counts as an update."""
    state = SandboxState(SandboxConfig())
    ecrn = json.loads(create(state, "784199690000163").body)["data"]["ecrn"]
    request = state.parse_onboard(body("784199690000163", ecrn=ecrn, first_name="New"))
    assert isinstance(request, OnboardRequest)
    reply = state.onboard(request, NO_FAULTS)
    assert reply.status == 200
    assert json.loads(reply.body)["data"]["customer_status"] == "KYC PENDING"
    assert json.loads(state.status(ecrn).body)["data"]["first_name"] == "New"
    assert state.snapshot()["updates"] == 1


def test_slow_delay_only_for_the_slow_id() -> None:
    """delay_for returns slow_ms in seconds for the slow scenario ID only."""
    state = SandboxState(SandboxConfig(slow_ms=250))
    assert state.delay_for("784199490000140") == 0.25
    assert state.delay_for("784199012345678") == 0.0
    assert state.delay_for(None) == 0.0
