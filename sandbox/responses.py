"""Response bodies exactly as docs/partner-api.md shows them, as compact JSON bytes.

The lookup and status calls use camelCase top-level keys (``statusCode``/``errorCode``), the
onboarding call snake_case (``status_code``/``error_code``/``request_id``); the gateway's
401 and 429 bodies are Spring-style. Key order follows the contract's examples.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def dumps(value: object) -> bytes:
    """Compact JSON bytes, the way the partner sends them."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _timestamp() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+00:00"


def gateway_path(path: str) -> str:
    """The path as the gateway reports it: without the first segment (``/caas``)."""
    rest = path.split("/", 2)
    return "/" + rest[2] if len(rest) == 3 else path


def gateway_error(status: int, error: str, path: str) -> bytes:
    """The API gateway's body for 401 (and, in the same shape, 429)."""
    return dumps(
        {"timestamp": _timestamp(), "status": status, "error": error, "path": gateway_path(path)}
    )


def token_error(error: str, description: str) -> bytes:
    """Keycloak's OAuth error body."""
    return dumps({"error": error, "error_description": description})


def lookup_success(data_json: bytes) -> bytes:
    """Lookup/status ``found``: ``data`` is the customer's pre-rendered JSON object."""
    return b'{"status":"success","statusCode":200,"data":' + data_json + b"}"


def lookup_failure(status_code: int, error_code: int, message: str) -> bytes:
    """Lookup/status failure (always sent with HTTP 200)."""
    return dumps(
        {
            "status": "failure",
            "statusCode": status_code,
            "errorCode": error_code,
            "message": message,
        }
    )


LOOKUP_NOT_FOUND = lookup_failure(404, 45001, "Customer not found")
LOOKUP_NOT_SUBSCRIBED = lookup_failure(404, 45003, "Customer not Subscribed")
LOOKUP_BAD_REQUEST = lookup_failure(400, 40001, "Invalid format input")
LOOKUP_INTERNAL_ERROR = lookup_failure(500, 45006, "Error while searching customer")
LOOKUP_COMPLIANCE = lookup_failure(406, 45013, "Customer is under compliance investigation")
LOOKUP_BLOCKED = lookup_failure(406, 45051, "Customer is blocked")


def onboard_success(request_id: str, ecrn: str, customer_status: str, aml: str, pep: bool) -> bytes:
    """Onboarding success (HTTP 200)."""
    return dumps(
        {
            "status": "success",
            "status_code": 200,
            "request_id": request_id,
            "data": {
                "ecrn": ecrn,
                "customer_status": customer_status,
                "aml_scan_status": aml,
                "pep": pep,
            },
        }
    )


def onboard_failure(
    status_code: int,
    error_code: int,
    message: str,
    details: dict[str, str] | None = None,
    status: str = "failed",
) -> bytes:
    """Onboarding failure; the HTTP status equals ``status_code``."""
    body: dict[str, Any] = {
        "status": status,
        "status_code": status_code,
        "error_code": error_code,
        "message": message,
    }
    if details is not None:
        body["details"] = details
    return dumps(body)


BACKEND_502 = onboard_failure(502, 40001, "Backend Technical Problem")
MANDATORY_MESSAGE = "Invalid format or missing mandatory request"
MASTER_DATA_MESSAGE = "Invalid master data"
BLOCKED_MESSAGE = "Customer is blocked"
