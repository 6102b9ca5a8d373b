"""The sandbox over real HTTP (one server subprocess for the module, reset between tests):
every response case of docs/partner-api.md, tokens, scenarios, faults, the rate cap and counters."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support import (
    AML_UNDER_INVESTIGATION,
    BLOCKED,
    COMPLIANCE,
    CREATE_502,
    CREATE_502_AFTER_COMMIT,
    CREATE_502_ONCE,
    EXISTING,
    INVALID_MASTER_DATA,
    KYC_PENDING,
    LOOKUP_BAD_REQUEST,
    LOOKUP_BLOCKED,
    LOOKUP_COMPLIANCE,
    LOOKUP_INTERNAL_ERROR,
    LOOKUP_INTERNAL_ERROR_ONCE,
    MANDATORY_MISSING,
    NOT_SUBSCRIBED,
    SLOW,
    UPDATE_FAILURE,
    poll_until,
)

from sandbox.testing import (
    CLIENT_ID,
    CLIENT_SECRET,
    LOOKUP_PATH,
    ONBOARD_PATH,
    TOKEN_PATH,
    SandboxError,
    SandboxHandle,
    run_sandbox,
)
from sandbox.testing import password_form as sandbox_password_form

PLAIN = "784199012345678"

# Knobs every test starts from; a test that changes one gets them back through the fixture.
BASELINE: dict[str, Any] = {
    "token_ttl": 7199,
    "refresh_ttl": 7199,
    "latency_ms": 0.0,
    "jitter_ms": 0.0,
    "slow_ms": 1500.0,
    "rps_limit": 0,
    "retry_after_s": 1,
    "fault_502": 0.0,
    "fault_502_after_commit": 0.0,
    "fault_timeout": 0.0,
    "timeout_hang_s": 35.0,
    "fault_45006": 0.0,
    "fault_429": 0.0,
    "faults_on_token": False,
    "issue_refresh_tokens": True,
}
BACKEND_502 = {
    "status": "failed",
    "status_code": 502,
    "error_code": 40001,
    "message": "Backend Technical Problem",
}


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxHandle]:
    """One sandbox for the whole module."""
    with run_sandbox(seed=7) as handle:
        yield handle


@pytest.fixture()
def sandbox(server: SandboxHandle) -> SandboxHandle:
    """The module's sandbox with baseline knobs, no customers but the pre-loaded one,
    zeroed counters and no live tokens."""
    # A call an earlier test left hanging (slow ID, timeout fault) would otherwise finish
    # after the reset and be counted in this test's counters.
    poll_until(lambda: server.stats()["in_flight"] == 0, 40.0, "earlier tests' calls to end")
    server.configure(**BASELINE)
    server.revoke_tokens()
    server.reset()
    return server


@pytest.fixture()
def http(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    """A plain HTTP client on the sandbox."""
    with httpx.Client(base_url=sandbox.base_url, timeout=10.0) as client:
        yield client


def password_form(**overrides: str) -> dict[str, str]:
    """The password-grant form with the default credentials, ``overrides`` on top."""
    return sandbox_password_form("api://sandbox/customer") | overrides


def refresh_form(refresh_token: str) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": refresh_token,
    }


@pytest.fixture()
def auth(http: httpx.Client) -> dict[str, str]:
    """Authorization header with a fresh password-grant token."""
    token = http.post(TOKEN_PATH, data=password_form()).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def customer_body(id_number: str = PLAIN, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "BRANCH",
        "agent_location_id": "AG01",
        "first_name": "Test",
        "last_name": "Person",
        "nationality": "AE",
        "date_of_birth": "1990-01-01",
        "country_of_birth": "AE",
        "country_of_residence": "AE",
        "gender": "M",
        "primary_mobile_number": "+971500000001",
        "email_id": "test@example.invalid",
        "occupation_id": "1",
        "resident_type_id": "1",
        "political_exposed_person": False,
        "address_list": [{"address_type_id": "1", "city": "Dubai", "country": "AE"}],
        "id_details": [
            {
                "id_type": "4",
                "id_number": id_number,
                "issued_country": "AE",
                "date_of_expiry": "2031-05-31",
            }
        ],
    }
    body.update(overrides)
    return body


def lookup(http: httpx.Client, auth: dict[str, str], id_number: str) -> httpx.Response:
    return http.post(LOOKUP_PATH, json={"idType": "4", "idNumber": id_number}, headers=auth)


def onboard(http: httpx.Client, auth: dict[str, str], body: dict[str, Any]) -> httpx.Response:
    return http.post(ONBOARD_PATH, json=body, headers=auth)


# -- tokens ---------------------------------------------------------------------------------


def test_password_grant_returns_keycloak_body(sandbox: SandboxHandle, http: httpx.Client) -> None:
    """A password grant answers 200 with every documented field, the configured lifetimes
    and the requested scope, and is counted as a password grant."""
    sandbox.configure(token_ttl=3, refresh_ttl=5)
    response = http.post(TOKEN_PATH, data=password_form())
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [
        "access_token", "expires_in", "refresh_expires_in", "refresh_token",
        "token_type", "not-before-policy", "session_state", "scope",
    ]  # fmt: skip
    assert body["expires_in"] == 3
    assert body["refresh_expires_in"] == 5
    assert body["token_type"] == "bearer"
    assert body["scope"] == "api://sandbox/customer"
    assert 0 < len(body["access_token"]) <= 600
    assert sandbox.stats()["grants"] == {"password": 1, "refresh": 0}


def test_grant_without_refresh_token_when_configured(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    """With refresh tokens switched off the grant carries no refresh fields."""
    sandbox.configure(issue_refresh_tokens=False)
    body = http.post(TOKEN_PATH, data=password_form()).json()
    assert "refresh_token" not in body
    assert "refresh_expires_in" not in body


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "someone-else"}, 401, "invalid_client"),
        ({"password": "wrong"}, 401, "invalid_grant"),
        ({"username": "nobody"}, 401, "invalid_grant"),
        ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
    ],
)
def test_wrong_credentials_are_refused(
    sandbox: SandboxHandle,
    http: httpx.Client,
    overrides: dict[str, str],
    status: int,
    error: str,
) -> None:
    """Wrong client or user credentials get Keycloak's error status and body, counted by error."""
    response = http.post(TOKEN_PATH, data=password_form(**overrides))
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["error_description"]
    stats = sandbox.stats()
    assert stats["grants"] == {"password": 0, "refresh": 0}
    assert stats["token_errors"].get(error) == 1


def test_refresh_rotates_and_used_refresh_token_is_dead(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    """A refresh grant returns a new token pair; the used refresh token then gets 400
    invalid_grant; the older access token still works until it expires."""
    first = http.post(TOKEN_PATH, data=password_form()).json()
    second_response = http.post(TOKEN_PATH, data=refresh_form(first["refresh_token"]))
    assert second_response.status_code == 200
    second = second_response.json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["scope"] == first["scope"]
    reuse = http.post(TOKEN_PATH, data=refresh_form(first["refresh_token"]))
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    for token in (first["access_token"], second["access_token"]):
        assert lookup(http, {"Authorization": f"Bearer {token}"}, EXISTING).status_code == 200
    stats = sandbox.stats()
    assert stats["grants"] == {"password": 1, "refresh": 1}
    assert stats["token_errors"]["invalid_grant"] == 1


def test_expired_access_token_gets_gateway_401(sandbox: SandboxHandle, http: httpx.Client) -> None:
    """Once its lifetime has passed an access token is refused with the gateway's 401 body."""
    sandbox.configure(token_ttl=2)
    token = http.post(TOKEN_PATH, data=password_form()).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert lookup(http, headers, EXISTING).status_code == 200
    poll_until(
        lambda: lookup(http, headers, EXISTING).status_code == 401, 10.0,
        "the access token to expire",
    )
    body = lookup(http, headers, EXISTING).json()
    assert list(body) == ["timestamp", "status", "error", "path"]
    assert body["status"] == 401
    assert body["error"] == "Unauthorized"
    assert body["path"] == "/api/v2/customer/validate"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", body["timestamp"])


def test_expired_refresh_token_gets_invalid_grant(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    """A refresh token past its lifetime gets 400 invalid_grant; a password grant still works."""
    sandbox.configure(token_ttl=1, refresh_ttl=1)
    grant = http.post(TOKEN_PATH, data=password_form()).json()
    headers = {"Authorization": f"Bearer {grant['access_token']}"}
    # Both tokens of a grant share the same expiry instant here, so the access token's 401
    # tells us the refresh token has expired too without spending it.
    poll_until(
        lambda: lookup(http, headers, EXISTING).status_code == 401, 10.0,
        "the access token to expire",
    )
    response = http.post(TOKEN_PATH, data=refresh_form(grant["refresh_token"]))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    assert http.post(TOKEN_PATH, data=password_form()).status_code == 200


@pytest.mark.parametrize(
    "authorization", [None, "Bearer not-a-token", "Basic c2FuZGJveDpzYW5kYm94", "Bearer"]
)
def test_missing_or_unknown_token_gets_401_on_every_business_call(
    sandbox: SandboxHandle, http: httpx.Client, authorization: str | None
) -> None:
    """Lookup, onboarding and status all answer 401 with the gateway body without a live token."""
    headers = {"Authorization": authorization} if authorization else {}
    calls = [
        http.post(LOOKUP_PATH, json={"idType": "4", "idNumber": EXISTING}, headers=headers),
        http.post(ONBOARD_PATH, json=customer_body(), headers=headers),
        http.get("/caas/api/v2/customer/1000000000000005", headers=headers),
    ]
    assert [r.status_code for r in calls] == [401, 401, 401]
    assert [r.json()["path"] for r in calls] == [
        "/api/v2/customer/validate",
        "/api/v1/CAAS/onBoarding/customer",
        "/api/v2/customer/1000000000000005",
    ]
    assert sandbox.stats()["creates"] == 0


def test_revoke_kills_access_and_refresh_tokens(sandbox: SandboxHandle, http: httpx.Client) -> None:
    """After the admin revoke, the old access token gets 401 and its refresh token
    invalid_grant; a new password grant works again."""
    grant = http.post(TOKEN_PATH, data=password_form()).json()
    headers = {"Authorization": f"Bearer {grant['access_token']}"}
    assert lookup(http, headers, EXISTING).status_code == 200
    sandbox.revoke_tokens()
    assert lookup(http, headers, EXISTING).status_code == 401
    refresh = http.post(TOKEN_PATH, data=refresh_form(grant["refresh_token"]))
    assert (refresh.status_code, refresh.json()["error"]) == (400, "invalid_grant")
    fresh = http.post(TOKEN_PATH, data=password_form()).json()["access_token"]
    assert lookup(http, {"Authorization": f"Bearer {fresh}"}, EXISTING).status_code == 200


# -- lookup ---------------------------------------------------------------------------------


def failure(status_code: int, error_code: int, message: str) -> dict[str, Any]:
    return {
        "status": "failure",
        "statusCode": status_code,
        "errorCode": error_code,
        "message": message,
    }


def test_lookup_finds_preloaded_existing_customer(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """The "existing" scenario customer is found with its fixed ecrn and every data key."""
    response = lookup(http, auth, EXISTING)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["status", "statusCode", "data"]
    assert (body["status"], body["statusCode"]) == ("success", 200)
    assert body["data"]["ecrn"] == "1000000000000005"
    assert set(body["data"]) == {
        "ecrn", "first_name", "middle_name", "last_name", "agent_location_id",
        "primary_mobile_number", "email_id", "customer_status", "aml_scan_status",
        "id_status", "id_date_of_expiry",
    }  # fmt: skip
    assert body["data"]["id_date_of_expiry"].endswith("+04:00")


@pytest.mark.parametrize(
    ("id_number", "expected"),
    [
        (PLAIN, failure(404, 45001, "Customer not found")),
        (NOT_SUBSCRIBED, failure(404, 45003, "Customer not Subscribed")),
        (LOOKUP_BAD_REQUEST, failure(400, 40001, "Invalid format input")),
        (LOOKUP_INTERNAL_ERROR, failure(500, 45006, "Error while searching customer")),
    ],
)
def test_lookup_business_failures_are_http_200(
    sandbox: SandboxHandle,
    http: httpx.Client,
    auth: dict[str, str],
    id_number: str,
    expected: dict[str, Any],
) -> None:
    """Not found, not subscribed, bad request and internal error come back as HTTP 200 with
    exactly the documented camelCase body, every time."""
    for _ in range(2):
        response = lookup(http, auth, id_number)
        assert response.status_code == 200
        assert response.json() == expected


@pytest.mark.parametrize(
    ("id_number", "code"), [(LOOKUP_COMPLIANCE, 45013), (LOOKUP_BLOCKED, 45051)]
)
def test_lookup_compliance_and_blocked(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str], id_number: str, code: int
) -> None:
    """Compliance investigation and blocked customers give statusCode 406 with their code."""
    body = lookup(http, auth, id_number).json()
    assert (body["status"], body["statusCode"], body["errorCode"]) == ("failure", 406, code)
    assert body["message"]


def test_lookup_internal_error_once_fires_once_per_id_until_reset(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """The once scenario answers 45006 on the first lookup only; a reset re-arms it."""
    codes = [lookup(http, auth, LOOKUP_INTERNAL_ERROR_ONCE).json()["errorCode"] for _ in range(3)]
    assert codes == [45006, 45001, 45001]
    sandbox.reset()
    assert lookup(http, auth, LOOKUP_INTERNAL_ERROR_ONCE).json()["errorCode"] == 45006


@pytest.mark.parametrize(
    "payload",
    [
        {"idType": "4", "idNumber": ""},
        {"idType": "4", "idNumber": "7" * 41},
        {"idType": "4", "idNumber": "784-1990-1234567-1"},
        {"idType": "4"},
        {"idType": "4444", "idNumber": "784199012345678"},
        {"idType": "99", "idNumber": "784199012345678"},
        {"idType": 4, "idNumber": "784199012345678"},
        ["not", "an", "object"],
    ],
)
def test_implausible_lookup_is_bad_request(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str], payload: object
) -> None:
    """An empty, over-long or non-alphanumeric idNumber, an idType that is no ID-type code,
    or a malformed body gets 40001."""
    response = http.post(LOOKUP_PATH, json=payload, headers=auth)
    assert response.status_code == 200
    assert response.json() == failure(400, 40001, "Invalid format input")


# -- onboarding -----------------------------------------------------------------------------


def test_onboard_creates_customer_that_lookup_and_status_then_find(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """A valid create answers the documented success body with a 16-digit ecrn; lookup and
    status GET then find the customer; the counters show one create."""
    response = onboard(http, auth, customer_body())
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["status", "status_code", "request_id", "data"]
    assert (body["status"], body["status_code"]) == ("success", 200)
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    ecrn = body["data"]["ecrn"]
    assert re.fullmatch(r"\d{16}", ecrn)
    assert body["data"] == {
        "ecrn": ecrn,
        "customer_status": "ACTIVE",
        "aml_scan_status": "Accepted",
        "pep": False,
    }
    found = lookup(http, auth, PLAIN).json()
    assert found["data"]["ecrn"] == ecrn
    assert found["data"]["first_name"] == "Test"
    status = http.get(f"/caas/api/v2/customer/{ecrn}", headers=auth)
    assert status.status_code == 200
    assert status.json()["data"]["customer_status"] == "ACTIVE"
    stats = sandbox.stats()
    assert (stats["creates"], stats["customers"], stats["duplicate_creates"]) == (1, 2, 0)


def test_second_create_of_same_id_counts_as_duplicate(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """Creating the same ID again makes a second customer and raises duplicate_creates once
    per ID; repeat_creates counts every extra create."""
    ecrns = [onboard(http, auth, customer_body()).json()["data"]["ecrn"] for _ in range(3)]
    assert len(set(ecrns)) == 3
    onboard(http, auth, customer_body("784199012345679"))
    stats = sandbox.stats()
    assert stats["creates"] == 4
    assert stats["duplicate_creates"] == 1
    assert stats["repeat_creates"] == 2
    assert lookup(http, auth, PLAIN).json()["data"]["ecrn"] == ecrns[0]


def test_update_with_known_ecrn_changes_customer(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """Onboarding with an existing ecrn updates that customer and answers success with it."""
    ecrn = onboard(http, auth, customer_body()).json()["data"]["ecrn"]
    response = onboard(http, auth, customer_body(first_name="Changed", ecrn=ecrn))
    assert response.status_code == 200
    assert response.json()["data"]["ecrn"] == ecrn
    assert lookup(http, auth, PLAIN).json()["data"]["first_name"] == "Changed"
    stats = sandbox.stats()
    assert (stats["creates"], stats["updates"]) == (1, 1)


def test_update_failures_answer_404_45032(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """An update naming an unknown ecrn, or any update of the update_failure ID, gets
    404/45032; a create of the update_failure ID works."""
    unknown = onboard(http, auth, customer_body(ecrn="2999999999999999"))
    assert unknown.status_code == 404
    created = onboard(http, auth, customer_body(UPDATE_FAILURE))
    assert created.status_code == 200
    ecrn = created.json()["data"]["ecrn"]
    refused = onboard(http, auth, customer_body(UPDATE_FAILURE, ecrn=ecrn))
    assert refused.status_code == 404
    for response in (unknown, refused):
        body = response.json()
        assert (body["status"], body["status_code"], body["error_code"]) == ("failed", 404, 45032)
    assert sandbox.stats()["updates"] == 0


@pytest.mark.parametrize(("id_number", "code"), [(BLOCKED, 45051), (COMPLIANCE, 45013)])
def test_onboard_blocked_and_compliance_are_406(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str], id_number: str, code: int
) -> None:
    """Blocked and compliance IDs are refused with HTTP 406 and nothing is created; the
    compliance message quotes the existing ecrn."""
    response = onboard(http, auth, customer_body(id_number))
    assert response.status_code == 406
    body = response.json()
    assert (body["status"], body["status_code"], body["error_code"]) == ("failed", 406, code)
    if id_number == COMPLIANCE:
        assert "1000000000000080" in body["message"]
    assert sandbox.stats()["creates"] == 0


def test_scenario_master_data_and_mandatory_rejections(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """The invalid_master_data and mandatory_missing IDs get 400 with 45053 and 40002 and
    their details, even with an otherwise valid body."""
    master = onboard(http, auth, customer_body(INVALID_MASTER_DATA))
    assert master.status_code == 400
    assert master.json() == {
        "status": "failed",
        "status_code": 400,
        "error_code": 45053,
        "message": "Invalid master data",
        "details": {"occupation_id": "unknown occupation code"},
    }
    mandatory = onboard(http, auth, customer_body(MANDATORY_MISSING))
    assert mandatory.status_code == 400
    body = mandatory.json()
    assert (body["status"], body["error_code"]) == ("failure", 40002)
    assert body["details"] == {"id_details[0].issued_country": "mandatory field is missing"}
    assert sandbox.stats()["creates"] == 0


def test_missing_mandatory_fields_get_40002_with_nested_details(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """A body without mandatory fields (top level and nested) gets 400/40002 naming each."""
    body = customer_body(first_name="  ", gender=None)
    del body["occupation_id"]
    body["address_list"] = [{"address_type_id": "1", "country": "AE"}]
    body["id_details"][0]["date_of_expiry"] = ""
    response = onboard(http, auth, body)
    assert response.status_code == 400
    assert response.json() == {
        "status": "failure",
        "status_code": 400,
        "error_code": 40002,
        "message": "Invalid format or missing mandatory request",
        "details": {
            "first_name": "mandatory field is missing",
            "gender": "mandatory field is missing",
            "occupation_id": "mandatory field is missing",
            "address_list[0].city": "mandatory field is missing",
            "id_details[0].date_of_expiry": "mandatory field is missing",
        },
    }


def test_unknown_master_data_codes_get_45053(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """Unknown country, gender, occupation and ID-type codes get 400/45053 naming each field."""
    body = customer_body(nationality="XX", gender="Q", occupation_id="999")
    body["id_details"][0]["id_type"] = "77"
    response = onboard(http, auth, body)
    assert response.status_code == 400
    result = response.json()
    assert (result["status"], result["error_code"]) == ("failed", 45053)
    assert set(result["details"]) == {
        "nationality", "gender", "occupation_id", "id_details[0].id_type",
    }  # fmt: skip


def test_mandatory_missing_wins_over_master_data(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """A body with both a missing field and a bad code gets 40002 listing only the missing one."""
    body = customer_body(nationality="XX")
    del body["last_name"]
    result = onboard(http, auth, body).json()
    assert result["error_code"] == 40002
    assert result["details"] == {"last_name": "mandatory field is missing"}


def test_non_json_onboard_body_gets_40002(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """A body that is not a JSON object is a 400/40002."""
    response = http.post(ONBOARD_PATH, content=b"not json", headers=auth)
    assert response.status_code == 400
    assert response.json()["error_code"] == 40002


def test_create_502_never_creates(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """The create_502 ID always gets HTTP 502 with the backend body and is never created."""
    for _ in range(2):
        response = onboard(http, auth, customer_body(CREATE_502))
        assert response.status_code == 502
        assert response.json() == BACKEND_502
    assert lookup(http, auth, CREATE_502).json()["errorCode"] == 45001
    assert sandbox.stats()["creates"] == 0


def test_create_502_once_then_creates(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """The create_502_once ID gets 502 (nothing created) on the first create only."""
    assert onboard(http, auth, customer_body(CREATE_502_ONCE)).status_code == 502
    assert lookup(http, auth, CREATE_502_ONCE).json()["errorCode"] == 45001
    assert onboard(http, auth, customer_body(CREATE_502_ONCE)).status_code == 200
    assert sandbox.stats()["creates"] == 1


def test_create_502_after_commit_has_created_the_customer(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """The first create of the after-commit ID answers 502 but the customer exists; a blind
    second create is counted as a duplicate."""
    assert onboard(http, auth, customer_body(CREATE_502_AFTER_COMMIT)).status_code == 502
    found = lookup(http, auth, CREATE_502_AFTER_COMMIT).json()
    assert re.fullmatch(r"\d{16}", found["data"]["ecrn"])
    assert onboard(http, auth, customer_body(CREATE_502_AFTER_COMMIT)).status_code == 200
    stats = sandbox.stats()
    assert (stats["creates"], stats["duplicate_creates"]) == (2, 1)


@pytest.mark.parametrize(
    ("id_number", "customer_status", "aml"),
    [
        (KYC_PENDING, "KYC PENDING", "Accepted"),
        (AML_UNDER_INVESTIGATION, "ACTIVE", "Under Investigation"),
    ],
)
def test_non_final_statuses_show_in_create_and_status(
    sandbox: SandboxHandle,
    http: httpx.Client,
    auth: dict[str, str],
    id_number: str,
    customer_status: str,
    aml: str,
) -> None:
    """kyc_pending and aml_under_investigation IDs are created with those statuses, which
    the status GET reports too."""
    data = onboard(http, auth, customer_body(id_number)).json()["data"]
    assert (data["customer_status"], data["aml_scan_status"]) == (customer_status, aml)
    status = http.get(f"/caas/api/v2/customer/{data['ecrn']}", headers=auth).json()["data"]
    assert (status["customer_status"], status["aml_scan_status"]) == (customer_status, aml)


def test_slow_id_outlasts_a_short_client_timeout(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """Calls for the slow ID wait slow_ms, so a client timeout well below it expires; with
    slow_ms 0 the same ID answers at once."""
    sandbox.configure(slow_ms=2000)
    with (
        httpx.Client(base_url=sandbox.base_url, timeout=0.5) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        lookup(impatient, auth, SLOW)
    sandbox.configure(slow_ms=0)
    assert lookup(http, auth, SLOW).json()["errorCode"] == 45001


# -- status ---------------------------------------------------------------------------------


def test_status_of_unknown_and_unsubscribed_ecrns(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """The status GET answers 200 with 45001 for an unknown ecrn and 45003 for the
    not-subscribed scenario's ecrn."""
    unknown = http.get("/caas/api/v2/customer/2999999999999999", headers=auth)
    assert (unknown.status_code, unknown.json()) == (200, failure(404, 45001, "Customer not found"))
    pending = http.get("/caas/api/v2/customer/1000000000000012", headers=auth)
    assert pending.json() == failure(404, 45003, "Customer not Subscribed")


# -- faults and pace ------------------------------------------------------------------------


def test_fault_502_creates_nothing(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """At fault_502 = 1 every create gets the backend 502 and nothing is created."""
    sandbox.configure(fault_502=1.0)
    response = onboard(http, auth, customer_body())
    assert (response.status_code, response.json()) == (502, BACKEND_502)
    stats = sandbox.stats()
    assert (stats["creates"], stats["faults"]["fault_502"]) == (0, 1)


def test_fault_502_after_commit_creates_then_fails(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """At fault_502_after_commit = 1 a create answers 502 but the customer exists."""
    sandbox.configure(fault_502_after_commit=1.0)
    assert onboard(http, auth, customer_body()).status_code == 502
    assert lookup(http, auth, PLAIN).json()["status"] == "success"
    assert sandbox.stats()["creates"] == 1


def test_fault_timeout_hangs_then_answers_502(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """At fault_timeout = 1 a call hangs past a short client timeout; a patient client gets
    the 502 afterwards and nothing is created."""
    sandbox.configure(fault_timeout=1.0, timeout_hang_s=1.0)
    with (
        httpx.Client(base_url=sandbox.base_url, timeout=0.2) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        onboard(impatient, auth, customer_body())
    response = onboard(http, auth, customer_body())
    assert (response.status_code, response.json()) == (502, BACKEND_502)
    assert sandbox.stats()["creates"] == 0


def test_fault_45006_is_body_level(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """At fault_45006 = 1 a lookup of even the existing customer answers 200 with 45006."""
    sandbox.configure(fault_45006=1.0)
    response = lookup(http, auth, EXISTING)
    assert response.status_code == 200
    assert response.json() == failure(500, 45006, "Error while searching customer")


def test_fault_429_sends_retry_after_but_spares_token_endpoint(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """At fault_429 = 1 business calls get 429 with Retry-After; the token endpoint is
    spared unless faults_on_token is on."""
    sandbox.configure(fault_429=1.0, retry_after_s=3)
    response = lookup(http, auth, EXISTING)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["status"] == 429
    assert http.post(TOKEN_PATH, data=password_form()).status_code == 200
    sandbox.configure(faults_on_token=True)
    assert http.post(TOKEN_PATH, data=password_form()).status_code == 429


def test_rps_limit_answers_429_with_retry_after(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """Beyond rps_limit business calls in one second the sandbox answers 429 with a
    Retry-After of at least one second; the counters agree with what the client saw."""
    sandbox.configure(rps_limit=2)
    statuses = []
    retry_after = []
    for _ in range(12):
        response = lookup(http, auth, EXISTING)
        statuses.append(response.status_code)
        if response.status_code == 429:
            retry_after.append(int(response.headers["Retry-After"]))
    assert statuses[:2] == [200, 200]
    assert 429 in statuses
    assert min(retry_after) >= 1
    stats = sandbox.stats()
    assert stats["rate_limited"] == statuses.count(429)
    assert stats["calls"]["lookup"] == {"200": statuses.count(200), "429": statuses.count(429)}


def test_counters_track_concurrency_and_calls(sandbox: SandboxHandle, auth: dict[str, str]) -> None:
    """Concurrent calls raise peak_concurrency and peak_rps; calls are counted by endpoint
    and status; in_flight returns to zero."""
    # Calls left hanging by earlier tests (slow ID, timeout fault) must not count here.
    poll_until(lambda: sandbox.stats()["in_flight"] == 0, 10.0, "earlier tests' calls to end")
    sandbox.reset()
    sandbox.configure(latency_ms=300)
    workers = 6
    barrier = threading.Barrier(workers)
    statuses: list[int] = []

    def call() -> None:
        with httpx.Client(base_url=sandbox.base_url, timeout=10.0) as client:
            barrier.wait()
            statuses.append(lookup(client, auth, EXISTING).status_code)

    threads = [threading.Thread(target=call) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * workers
    stats = sandbox.stats()
    assert 2 <= stats["peak_concurrency"] <= workers
    assert 2 <= stats["peak_rps"] <= workers
    assert stats["in_flight"] == 0
    assert stats["calls"]["lookup"] == {"200": workers}
    assert stats["requests_total"] == workers


# -- admin ----------------------------------------------------------------------------------


def test_reset_clears_customers_and_counters_but_keeps_config(
    sandbox: SandboxHandle, http: httpx.Client, auth: dict[str, str]
) -> None:
    """Reset forgets created customers and zeroes counters; knobs and tokens survive it."""
    sandbox.configure(retry_after_s=4)
    onboard(http, auth, customer_body())
    sandbox.reset()
    stats = sandbox.stats()
    assert (stats["customers"], stats["creates"], stats["requests_total"]) == (1, 0, 0)
    assert lookup(http, auth, PLAIN).json()["errorCode"] == 45001
    assert sandbox.config()["retry_after_s"] == 4


def test_configure_rejects_unknown_and_invalid_knobs(sandbox: SandboxHandle) -> None:
    """Unknown knobs and out-of-range values are refused with a message naming the knob,
    and the running configuration stays as it was."""
    with pytest.raises(SandboxError, match="no_such_knob"):
        sandbox.configure(no_such_knob=1)
    with pytest.raises(SandboxError, match="fault_502"):
        sandbox.configure(fault_502=1.5)
    assert sandbox.config()["fault_502"] == 0.0
    assert sandbox.config()["client_secret"] != CLIENT_SECRET


def test_run_sandbox_reports_server_stderr_when_start_fails(tmp_path: Any) -> None:
    """A sandbox that cannot start raises SandboxError carrying the server's one-line reason."""
    with (
        pytest.raises(SandboxError, match="master-data directory not found"),
        run_sandbox(master_data_dir=tmp_path / "missing"),
    ):
        pass


def test_run_sandbox_rejects_unknown_knob_before_starting() -> None:
    """A misspelt knob fails at once with ValueError naming it."""
    with pytest.raises(ValueError, match="latencyms"), run_sandbox(latencyms=5):
        pass
