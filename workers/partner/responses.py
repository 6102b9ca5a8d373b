"""Typed results of the partner calls and ``classify``, the one mapping from a response to them.

Pure code: no httpx, no redis. Every response of the lookup, onboarding and status calls goes
through :func:`classify`, so the rules for HTTP statuses, body codes, key casing and odd bodies
(a proxy's HTML page, an empty body) live in exactly one place and are tested with one table.

The mapping is deliberately conservative where the contract is silent:

* an unknown 4xx is ``Rejected`` (the partner refused this row; resending will not help);
* an unknown 5xx, a 429 and anything unreadable on a 2xx is ``Transient``;
* on the onboarding call every answer that does not prove what happened (5xx, a 2xx we cannot
  read, a timeout) is ``Transient(in_doubt=True)``: the create may have landed, so the next
  step is a lookup, never a blind second create.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeAlias

Call = Literal["lookup", "onboard", "status"]

# Business codes of docs/partner-api.md; strings, because bodies carry them as ints or strings.
NOT_FOUND = "45001"
NOT_SUBSCRIBED = "45003"
LOOKUP_INTERNAL_ERROR = "45006"
TRANSIENT_CODES = frozenset({LOOKUP_INTERNAL_ERROR})


@dataclass(frozen=True, slots=True)
class Found:
    """Lookup found the customer; ``data`` is the partner's record (personal data: never log)."""

    ecrn: str
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class NotFound:
    """The partner has no such customer (45001)."""

    message: str = ""


@dataclass(frozen=True, slots=True)
class NotSubscribed:
    """The customer exists in the CDP but is not subscribed for this partner (45003)."""

    message: str = ""


@dataclass(frozen=True, slots=True)
class Onboarded:
    """The onboarding call succeeded: the customer now has an ``ecrn``."""

    ecrn: str
    customer_status: str | None = None
    aml_scan_status: str | None = None
    pep: bool | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Status:
    """The status GET answered with the customer's record (personal data: never log)."""

    data: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ecrn(self) -> str | None:
        """The customer reference in the record, when present."""
        value = self.data.get("ecrn")
        return None if value is None else str(value)

    @property
    def customer_status(self) -> str | None:
        """``customer_status`` of the record, e.g. ``ACTIVE`` or ``KYC PENDING``."""
        value = self.data.get("customer_status")
        return None if value is None else str(value)

    @property
    def aml_scan_status(self) -> str | None:
        """``aml_scan_status`` of the record, e.g. ``Accepted`` or ``Under Investigation``."""
        value = self.data.get("aml_scan_status")
        return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Rejected:
    """The partner refused the content of the request; resending it unchanged will not help.

    ``code`` is the partner's business code as a string (``"45051"``) or ``"http_<status>"``
    when the answer carried none; ``details`` maps a field name to its problem.
    """

    code: str
    message: str = ""
    details: Mapping[str, str] = field(default_factory=dict)
    http_status: int = 0


@dataclass(frozen=True, slots=True)
class Transient:
    """Trouble that may pass: retry later (after ``retry_after`` seconds when given).

    ``in_doubt`` is True when the request may have taken effect on the partner's side (an
    onboarding create whose answer was lost): the caller must look up before creating again.
    """

    reason: str
    code: str | None = None
    retry_after: float | None = None
    in_doubt: bool = False


@dataclass(frozen=True, slots=True)
class Unauthorized:
    """The partner refused the access token (HTTP 401)."""

    message: str = ""


PartnerResult: TypeAlias = (
    Found | NotFound | NotSubscribed | Onboarded | Status | Rejected | Transient | Unauthorized
)


def classify(
    call: Call,
    http_status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    now: datetime | None = None,
) -> PartnerResult:
    """Map one partner response to its typed result. Never raises.

    ``now`` is only used to turn an HTTP-date ``Retry-After`` into seconds.
    """
    onboard = call == "onboard"
    retry_after = parse_retry_after(_header(headers, "retry-after"), now=now)
    payload = _parse(body)

    if http_status == 401:
        return Unauthorized(_message(payload) if payload is not None else "")
    if http_status == 429:
        return Transient("rate_limited", code="http_429", retry_after=retry_after)
    if http_status == 408:
        return Transient("timeout", code="http_408", retry_after=retry_after, in_doubt=onboard)
    if http_status >= 500:
        code = _code(payload) if payload is not None else None
        return Transient(
            "server_error", code=code or f"http_{http_status}",
            retry_after=retry_after, in_doubt=onboard,
        )

    if http_status < 200 or 300 <= http_status < 400:
        # A redirect or an informational answer: nothing we can read proves what happened.
        return Transient("unexpected_status", code=f"http_{http_status}", in_doubt=onboard)
    if payload is None:
        if 400 <= http_status < 500:
            return Rejected(
                f"http_{http_status}", f"HTTP {http_status} with a body that is not JSON",
                {}, http_status,
            )
        # A 2xx we cannot read proves nothing about what happened.
        return Transient("unexpected_body", code=f"http_{http_status}", in_doubt=onboard)

    return _classify_payload(call, http_status, payload, retry_after)


def _classify_payload(
    call: Call, http_status: int, payload: Mapping[str, Any], retry_after: float | None
) -> PartnerResult:
    """Map a JSON object body (HTTP status already known not to be 401/408/429/5xx)."""
    onboard = call == "onboard"
    code = _code(payload)
    body_status = _body_status(payload)
    message = _message(payload)

    if code is None and 200 <= http_status < 300 and _is_success(payload, body_status):
        return _success(call, payload)

    # A gateway body inside a 200 (``"status": 401``) still means the token was refused.
    if body_status == 401:
        return Unauthorized(message)
    if not onboard and code == NOT_FOUND:
        return NotFound(message)
    if not onboard and code == NOT_SUBSCRIBED:
        return NotSubscribed(message)
    if code in TRANSIENT_CODES or (body_status is not None and body_status >= 500):
        return Transient("partner_error", code=code or f"http_{body_status}",
                         retry_after=retry_after, in_doubt=onboard)
    if body_status == 429:
        return Transient("rate_limited", code=code or "http_429", retry_after=retry_after)
    if code is None and 200 <= http_status < 300 and body_status in (None, 200):
        # Neither success nor an error code: an answer we do not understand.
        return Transient("unexpected_body", code=f"http_{http_status}", in_doubt=onboard)
    return Rejected(
        code or f"http_{body_status or http_status}", message, _details(payload), http_status
    )


def _success(call: Call, payload: Mapping[str, Any]) -> PartnerResult:
    """Turn a success body into Found / Onboarded / Status, or Transient if it is malformed."""
    data = payload.get("data")
    onboard = call == "onboard"
    if not isinstance(data, Mapping):
        return Transient("unexpected_body", code="no_data", in_doubt=onboard)
    ecrn = data.get("ecrn")
    if call == "status":
        return Status(dict(data))
    if ecrn in (None, ""):
        return Transient("unexpected_body", code="no_ecrn", in_doubt=onboard)
    if call == "lookup":
        return Found(str(ecrn), dict(data))
    pep = data.get("pep")
    request_id = _first(payload, "request_id", "requestId")
    return Onboarded(
        ecrn=str(ecrn),
        customer_status=_opt_str(data.get("customer_status")),
        aml_scan_status=_opt_str(data.get("aml_scan_status")),
        pep=pep if isinstance(pep, bool) else None,
        request_id=_opt_str(request_id),
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def _parse(body: bytes) -> Mapping[str, Any] | None:
    """The body as a JSON object, or None for empty, non-JSON or non-object bodies."""
    if not body or not body.strip():
        return None
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, Mapping) else None


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Case-insensitive header lookup that works for plain dicts too."""
    if not headers:
        return None
    direct = headers.get(name)
    if direct is not None:
        return direct
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _first(payload: Mapping[str, Any], *keys: str) -> Any:
    """The value of the first key present (the contract allows either casing)."""
    for key in keys:
        if key in payload and payload[key] is not None:
            return payload[key]
    return None


def _code(payload: Mapping[str, Any] | None) -> str | None:
    """The business error code as a string (``45001``), whichever casing and type it came in."""
    if payload is None:
        return None
    value = _first(payload, "errorCode", "error_code")
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        return str(int(float(text)))
    except ValueError:
        return text


def _body_status(payload: Mapping[str, Any]) -> int | None:
    """The status code inside the body: ``statusCode``/``status_code``, or a gateway ``status``."""
    value = _first(payload, "statusCode", "status_code")
    if value is None and not isinstance(payload.get("status"), str):
        value = payload.get("status")
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(float(str(value)))
    except ValueError:
        return None


def _is_success(payload: Mapping[str, Any], body_status: int | None) -> bool:
    """True for ``"status": "success"`` or, without a status word, a 200 body with ``data``."""
    word = payload.get("status")
    if isinstance(word, str):
        return word.strip().lower() == "success"
    return body_status in (None, 200) and "data" in payload


def _message(payload: Mapping[str, Any]) -> str:
    """The human message of an error body, whichever key carries it."""
    value = _first(payload, "message", "error_description", "error")
    return "" if value is None else str(value)


def _details(payload: Mapping[str, Any]) -> dict[str, str]:
    """Field-level problems as ``{field: problem}``, tolerating lists and plain strings."""
    raw = payload.get("details")
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        return {str(k): _text(v) for k, v in raw.items()}
    if isinstance(raw, list):
        out: dict[str, str] = {}
        for index, item in enumerate(raw):
            if isinstance(item, Mapping):
                name = _first(item, "field", "name", "path")
                problem = _first(item, "message", "problem", "error")
                out[str(name if name is not None else index)] = _text(
                    problem if problem is not None else item
                )
            else:
                out[str(index)] = _text(item)
        return out
    return {"": _text(raw)}


def _text(value: Any) -> str:
    """A detail value as text."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _opt_str(value: Any) -> str | None:
    """``str(value)`` unless it is None."""
    return None if value is None else str(value)
