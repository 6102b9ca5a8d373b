"""The one response mapping: a table of every case of docs/partner-api.md, and odd bodies."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from workers.partner.responses import (
    Call,
    Found,
    NotFound,
    NotSubscribed,
    Onboarded,
    PartnerResult,
    Rejected,
    Status,
    Transient,
    Unauthorized,
    classify,
    parse_retry_after,
)

LOOKUP_DATA = {
    "ecrn": "1000000000000005", "first_name": "Aisha", "middle_name": "", "last_name": "Khan",
    "agent_location_id": "AL1", "primary_mobile_number": "+971554747002",
    "email_id": "a@example.com", "customer_status": "ACTIVE", "aml_scan_status": "Accepted",
    "id_status": "Active", "id_date_of_expiry": "2030-01-01T00:00:00+04:00",
}
GATEWAY_401 = {"timestamp": "2025-01-01T00:00:00Z", "status": 401, "error": "Unauthorized",
               "path": "/api/v2/customer/validate"}


def j(value: Any) -> bytes:
    return json.dumps(value).encode()


# (id, call, http status, body, headers, expected result)
TABLE: list[tuple[str, Call, int, bytes, dict[str, str], PartnerResult]] = [
    # §2 lookup
    ("lookup found", "lookup", 200,
     j({"status": "success", "statusCode": 200, "data": LOOKUP_DATA}), {},
     Found("1000000000000005", LOOKUP_DATA)),
    ("lookup found, old message key", "lookup", 200,
     j({"status": "success", "statusCode": 200, "message": "Successfully Processed",
        "data": LOOKUP_DATA}), {},
     Found("1000000000000005", LOOKUP_DATA)),
    ("lookup found, snake_case keys", "lookup", 200,
     j({"status": "success", "status_code": 200, "data": {"ecrn": 1000000000000005}}), {},
     Found("1000000000000005", {"ecrn": 1000000000000005})),
    ("lookup not found", "lookup", 200,
     j({"status": "failure", "statusCode": 404, "errorCode": 45001,
        "message": "Customer not found"}), {},
     NotFound("Customer not found")),
    ("lookup not found, snake_case and string code", "lookup", 200,
     j({"status": "failure", "status_code": 404, "error_code": "45001",
        "message": "Customer not found"}), {},
     NotFound("Customer not found")),
    ("lookup not subscribed", "lookup", 200,
     j({"status": "failure", "statusCode": 404, "errorCode": 45003,
        "message": "Customer not Subscribed"}), {},
     NotSubscribed("Customer not Subscribed")),
    ("lookup bad request", "lookup", 200,
     j({"status": "failure", "statusCode": 400, "errorCode": 40001,
        "message": "Invalid format input"}), {},
     Rejected("40001", "Invalid format input", {}, 200)),
    ("lookup bad request, older code", "lookup", 200,
     j({"status": "failure", "statusCode": 400, "errorCode": 45005,
        "message": "Invalid Lookup request"}), {},
     Rejected("45005", "Invalid Lookup request", {}, 200)),
    ("lookup internal error", "lookup", 200,
     j({"status": "failure", "statusCode": 500, "errorCode": 45006,
        "message": "Error while searching customer"}), {},
     Transient("partner_error", code="45006")),
    ("lookup compliance investigation", "lookup", 200,
     j({"status": "failure", "statusCode": 406, "errorCode": 45013, "message": "under review"}),
     {}, Rejected("45013", "under review", {}, 200)),
    ("lookup compliance investigation as HTTP 406", "lookup", 406,
     j({"status": "failure", "statusCode": 406, "errorCode": 45013, "message": "under review"}),
     {}, Rejected("45013", "under review", {}, 406)),
    ("lookup blocked", "lookup", 200,
     j({"status": "failure", "statusCode": 406, "errorCode": 45051, "message": "blocked"}), {},
     Rejected("45051", "blocked", {}, 200)),
    ("lookup unauthorized", "lookup", 401, j(GATEWAY_401), {}, Unauthorized("Unauthorized")),
    ("lookup unauthorized, empty body", "lookup", 401, b"", {}, Unauthorized("")),
    ("lookup gateway 401 body inside a 200", "lookup", 200, j(GATEWAY_401), {},
     Unauthorized("Unauthorized")),
    # §3 onboarding
    ("onboard success", "onboard", 200,
     j({"status": "success", "status_code": 200, "request_id": "a" * 32,
        "data": {"ecrn": "1234567890123456", "customer_status": "ACTIVE",
                 "aml_scan_status": "Accepted", "pep": False}}), {},
     Onboarded("1234567890123456", "ACTIVE", "Accepted", False, "a" * 32)),
    ("onboard success, camelCase top level", "onboard", 200,
     j({"status": "success", "statusCode": 200, "requestId": "b" * 32,
        "data": {"ecrn": "1234567890123456", "customer_status": "KYC PENDING",
                 "aml_scan_status": "Under Investigation", "pep": True}}), {},
     Onboarded("1234567890123456", "KYC PENDING", "Under Investigation", True, "b" * 32)),
    ("onboard compliance investigation", "onboard", 406,
     j({"status": "failed", "status_code": 406, "error_code": 45013,
        "message": "under investigation, ecrn 1000000000000005"}), {},
     Rejected("45013", "under investigation, ecrn 1000000000000005", {}, 406)),
    ("onboard blocked", "onboard", 406,
     j({"status": "failed", "status_code": 406, "error_code": 45051, "message": "blocked"}), {},
     Rejected("45051", "blocked", {}, 406)),
    ("onboard invalid master data", "onboard", 400,
     j({"status": "failed", "status_code": 400, "error_code": 45053, "message": "bad code",
        "details": {"nationality": "unknown code"}}), {},
     Rejected("45053", "bad code", {"nationality": "unknown code"}, 400)),
    ("onboard mandatory field missing", "onboard", 400,
     j({"status": "failure", "status_code": 400, "error_code": 40002,
        "message": "Invalid format or missing mandatory request",
        "details": {"first_name": "required"}}), {},
     Rejected("40002", "Invalid format or missing mandatory request",
              {"first_name": "required"}, 400)),
    ("onboard mandatory missing, details as a list", "onboard", 400,
     j({"status": "failure", "statusCode": 400, "errorCode": 40002, "message": "m",
        "details": [{"field": "gender", "message": "required"}, "free text"]}), {},
     Rejected("40002", "m", {"gender": "required", "1": "free text"}, 400)),
    ("onboard update failure", "onboard", 404,
     j({"status": "failed", "status_code": 404, "error_code": 45032, "message": "no update"}),
     {}, Rejected("45032", "no update", {}, 404)),
    ("onboard unauthorized", "onboard", 401, j(GATEWAY_401), {}, Unauthorized("Unauthorized")),
    ("onboard internal server error 502", "onboard", 502,
     j({"status": "failed", "status_code": 502, "error_code": 40001,
        "message": "Backend Technical Problem"}), {},
     Transient("server_error", code="40001", in_doubt=True)),
    ("onboard 502 body inside a 200", "onboard", 200,
     j({"status": "failed", "status_code": 502, "error_code": 40001,
        "message": "Backend Technical Problem"}), {},
     Transient("partner_error", code="40001", in_doubt=True)),
    # §4 status
    ("status success", "status", 200,
     j({"status": "success", "statusCode": 200, "data": LOOKUP_DATA}), {}, Status(LOOKUP_DATA)),
    ("status not subscribed", "status", 200,
     j({"status": "failure", "statusCode": 404, "errorCode": 45003,
        "message": "Customer not Subscribed"}), {}, NotSubscribed("Customer not Subscribed")),
    ("status not found", "status", 200,
     j({"status": "failure", "statusCode": 404, "errorCode": 45001,
        "message": "Customer not found"}), {}, NotFound("Customer not found")),
    ("status unauthorized", "status", 401, j(GATEWAY_401), {}, Unauthorized("Unauthorized")),
    # odd bodies, proxies, limits
    ("proxy HTML 502 on onboard", "onboard", 502, b"<html>Bad Gateway</html>", {},
     Transient("server_error", code="http_502", in_doubt=True)),
    ("proxy HTML 503 on lookup with Retry-After", "lookup", 503, b"<html>down</html>",
     {"Retry-After": "7"}, Transient("server_error", code="http_503", retry_after=7.0)),
    ("empty 504 on lookup", "lookup", 504, b"", {},
     Transient("server_error", code="http_504")),
    ("429 with Retry-After, lower-case header", "lookup", 429, b"", {"retry-after": "2"},
     Transient("rate_limited", code="http_429", retry_after=2.0)),
    ("429 on onboard is not in doubt: the gateway refused it", "onboard", 429,
     j({"message": "slow down"}), {"Retry-After": "0.5"},
     Transient("rate_limited", code="http_429", retry_after=0.5)),
    ("429 body inside a 200", "lookup", 200,
     j({"status": "failure", "statusCode": 429, "message": "slow down"}), {"Retry-After": "1"},
     Transient("rate_limited", code="http_429", retry_after=1.0)),
    ("408 on onboard is in doubt", "onboard", 408, b"", {},
     Transient("timeout", code="http_408", in_doubt=True)),
    ("empty 200 on lookup", "lookup", 200, b"", {},
     Transient("unexpected_body", code="http_200")),
    ("empty 200 on onboard is in doubt", "onboard", 200, b"  ", {},
     Transient("unexpected_body", code="http_200", in_doubt=True)),
    ("HTML 200 from a captive proxy", "lookup", 200, b"<html>login</html>", {},
     Transient("unexpected_body", code="http_200")),
    ("JSON list instead of an object", "status", 200, b"[1, 2]", {},
     Transient("unexpected_body", code="http_200")),
    ("non-UTF-8 bytes", "lookup", 200, b"\xff\xfe\x00", {},
     Transient("unexpected_body", code="http_200")),
    ("empty JSON object", "lookup", 200, b"{}", {},
     Transient("unexpected_body", code="http_200")),
    ("success without data", "onboard", 200, j({"status": "success", "status_code": 200}), {},
     Transient("unexpected_body", code="no_data", in_doubt=True)),
    ("success without ecrn", "lookup", 200,
     j({"status": "success", "statusCode": 200, "data": {"customer_status": "ACTIVE"}}), {},
     Transient("unexpected_body", code="no_ecrn")),
    ("redirect on onboard", "onboard", 302, b"", {"Location": "/login"},
     Transient("unexpected_status", code="http_302", in_doubt=True)),
    ("HTML 404 from a proxy (wrong path)", "lookup", 404, b"<html>Not Found</html>", {},
     Rejected("http_404", "HTTP 404 with a body that is not JSON", {}, 404)),
    ("gateway 403 JSON without a code", "onboard", 403,
     j({"timestamp": "t", "status": 403, "error": "Forbidden", "path": "/x"}), {},
     Rejected("http_403", "Forbidden", {}, 403)),
    ("unknown 4xx code on onboard", "onboard", 400,
     j({"status": "failed", "status_code": 400, "error_code": 49999, "message": "new rule"}), {},
     Rejected("49999", "new rule", {}, 400)),
    ("unknown code on lookup", "lookup", 200,
     j({"status": "failure", "statusCode": 404, "errorCode": 45999, "message": "?"}), {},
     Rejected("45999", "?", {}, 200)),
    ("unknown code with a 5xx body status", "lookup", 200,
     j({"status": "failure", "statusCode": 503, "errorCode": 45998, "message": "?"}), {},
     Transient("partner_error", code="45998")),
    ("unknown 5xx with a business code", "lookup", 500,
     j({"status": "failure", "statusCode": 500, "errorCode": 45006}), {},
     Transient("server_error", code="45006")),
    ("45001 on onboard is not a lookup miss", "onboard", 404,
     j({"status": "failed", "status_code": 404, "error_code": 45001, "message": "x"}), {},
     Rejected("45001", "x", {}, 404)),
]


@pytest.mark.parametrize(
    ("call", "http_status", "body", "headers", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in TABLE],
)
def test_classify_table(
    call: Call, http_status: int, body: bytes, headers: dict[str, str], expected: PartnerResult
) -> None:
    """Each response of the contract (and each odd body) maps to exactly the expected result."""
    assert classify(call, http_status, body, headers) == expected


def test_found_keeps_the_record_out_of_its_repr() -> None:
    """A result printed into a log or a traceback never shows the customer's personal data."""
    result = classify("lookup", 200, j({"status": "success", "data": LOOKUP_DATA}), {})
    assert isinstance(result, Found)
    assert "Aisha" not in repr(result)
    assert "Aisha" not in repr(Status(LOOKUP_DATA))


def test_status_exposes_the_follow_up_fields() -> None:
    """The status result gives the fields a follow-up needs without digging into the dict."""
    result = classify("status", 200, j({"status": "success", "data": LOOKUP_DATA}), {})
    assert isinstance(result, Status)
    assert (result.ecrn, result.customer_status, result.aml_scan_status) == (
        "1000000000000005", "ACTIVE", "Accepted")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("soon", None),
        ("nan", None),
        ("Fri, 27 Nov 2026 14:00:30 GMT", 30.0),
        ("Fri, 27 Nov 2026 13:59:00 GMT", 0.0),
    ],
)
def test_retry_after_accepts_seconds_and_http_dates(
    value: str | None, expected: float | None
) -> None:
    """Retry-After is read as delta-seconds or an HTTP-date; junk is ignored, never negative."""
    now = datetime(2026, 11, 27, 14, 0, 0, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected


def test_classify_uses_http_date_retry_after() -> None:
    """A 503 with an HTTP-date Retry-After carries the seconds until that date."""
    now = datetime(2026, 11, 27, 14, 0, 0, tzinfo=UTC)
    result = classify("lookup", 503, b"", {"Retry-After": "Fri, 27 Nov 2026 14:00:10 GMT"},
                      now=now)
    assert result == Transient("server_error", code="http_503", retry_after=10.0)


def test_responses_module_is_pure() -> None:
    """Importing the result types pulls in no HTTP, Redis or Celery library."""
    code = ("import sys, workers.partner.responses; "
            "print(sorted({'httpx', 'redis', 'celery', 'aiohttp'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
