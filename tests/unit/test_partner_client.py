"""The partner client over httpx.MockTransport: requests, 401 handling, transport failures, logs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx
import pytest
import structlog
from httpx_aiohttp import AiohttpTransport

from pipeline.core.logs import mask_processor
from pipeline.core.settings import PartnerSettings
from workers.partner.client import PartnerClient
from workers.partner.http import async_transport, timeout, transport_failure
from workers.partner.responses import (
    Found,
    Onboarded,
    PartnerResult,
    Rejected,
    Status,
    Transient,
    Unauthorized,
)

SETTINGS = PartnerSettings(base_url="https://partner.test", http_transport="httpx",
                           connect_timeout=1.5, read_timeout=7.0, write_timeout=8.0,
                           pool_timeout=9.0)
ID_NUMBER = "784199554586091"
FOUND = {"status": "success", "statusCode": 200,
         "data": {"ecrn": "1000000000000005", "first_name": "Aisha", "last_name": "Khan",
                  "primary_mobile_number": "+971554747002", "email_id": "aisha@example.com",
                  "customer_status": "ACTIVE", "aml_scan_status": "Accepted"}}
GATEWAY_401 = {"timestamp": "t", "status": 401, "error": "Unauthorized", "path": "/x"}
ONBOARD_BODY: dict[str, Any] = {
    "channel": "BATCH", "first_name": "Aisha", "last_name": "Khan",
    "date_of_birth": "1990-05-17", "primary_mobile_number": "+971554747002",
    "email_id": "aisha@example.com",
    "id_details": [{"id_type": "4", "id_number": ID_NUMBER, "name_as_per_id": "Aisha Khan"}],
}


class FakeTokens:
    """A token source that hands out t1, t2, ... and records every refresh request."""

    def __init__(self) -> None:
        self.current = "t1"
        self.refreshed: list[str] = []

    async def aget(self) -> str:
        return self.current

    async def arefresh(self, failed_token: str) -> str:
        self.refreshed.append(failed_token)
        if failed_token == self.current:
            self.current = f"t{len(self.refreshed) + 1}"
        return self.current


class NoTokens:
    """A token source whose token endpoint is down."""

    async def aget(self) -> str:
        from workers.partner.token import TokenError

        raise TokenError("token endpoint unreachable (ConnectError)")

    async def arefresh(self, failed_token: str) -> str:
        return await self.aget()


Handler = Callable[[httpx.Request], httpx.Response]


def run(
    handler: Handler, action: Callable[[PartnerClient], Any], tokens: Any = None
) -> tuple[PartnerResult, list[httpx.Request]]:
    """Run one client action against a MockTransport; return its result and the requests."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    async def main() -> PartnerResult:
        async with PartnerClient(SETTINGS, tokens or FakeTokens(),
                                 transport=httpx.MockTransport(record)) as client:
            result: PartnerResult = await action(client)
            return result

    return asyncio.run(main()), seen


def test_lookup_posts_id_with_bearer_token_and_maps_found() -> None:
    """Lookup POSTs idType/idNumber as JSON to the lookup path with the broker's token."""
    result, seen = run(lambda r: httpx.Response(200, json=FOUND),
                       lambda c: c.lookup("4", ID_NUMBER))
    assert isinstance(result, Found) and result.ecrn == "1000000000000005"
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "https://partner.test/caas/api/v2/customer/validate"
    assert request.headers["Authorization"] == "Bearer t1"
    assert json.loads(request.content) == {"idType": "4", "idNumber": ID_NUMBER}


def test_status_gets_the_configured_path_with_the_ecrn() -> None:
    """Status GETs the status path template filled with the (URL-quoted) ecrn."""
    result, seen = run(lambda r: httpx.Response(200, json=FOUND),
                       lambda c: c.status("1000000000000005"))
    assert isinstance(result, Status)
    assert seen[0].method == "GET"
    assert seen[0].url.path == "/caas/api/v2/customer/1000000000000005"


def test_onboard_sends_the_body_unchanged() -> None:
    """Onboard POSTs the body as JSON and maps the success answer."""
    answer = {"status": "success", "status_code": 200, "request_id": "f" * 32,
              "data": {"ecrn": "2000000000000001", "customer_status": "ACTIVE",
                       "aml_scan_status": "Accepted", "pep": False}}
    result, seen = run(lambda r: httpx.Response(200, json=answer),
                       lambda c: c.onboard(ONBOARD_BODY))
    assert result == Onboarded("2000000000000001", "ACTIVE", "Accepted", False, "f" * 32)
    assert seen[0].url.path == "/caas-lcm/api/v1/CAAS/onBoarding/customer"
    assert json.loads(seen[0].content) == ONBOARD_BODY


def test_a_401_refreshes_the_failed_token_once_and_retries() -> None:
    """After a 401 the broker is asked to replace exactly the refused token; the retry works."""
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer t1":
            return httpx.Response(401, json=GATEWAY_401)
        return httpx.Response(200, json=FOUND)

    tokens = FakeTokens()
    result, seen = run(handler, lambda c: c.lookup("4", ID_NUMBER), tokens)
    assert isinstance(result, Found)
    assert tokens.refreshed == ["t1"]
    assert [r.headers["Authorization"] for r in seen] == ["Bearer t1", "Bearer t2"]


def test_a_second_401_is_returned_not_looped() -> None:
    """Two 401s in a row give Unauthorized after exactly two requests and one refresh."""
    tokens = FakeTokens()
    result, seen = run(lambda r: httpx.Response(401, json=GATEWAY_401),
                       lambda c: c.onboard(ONBOARD_BODY), tokens)
    assert result == Unauthorized("Unauthorized")
    assert len(seen) == 2
    assert tokens.refreshed == ["t1"]


def test_no_token_is_transient_and_sends_nothing() -> None:
    """When no token can be had the call is Transient and never reaches the partner."""
    result, seen = run(lambda r: httpx.Response(200, json=FOUND),
                       lambda c: c.lookup("4", ID_NUMBER), NoTokens())
    assert result == Transient("token_unavailable")
    assert seen == []


def raiser(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "call", "expected"),
    [
        (httpx.ReadTimeout("t"), "onboard", Transient("timeout", in_doubt=True)),
        (httpx.ReadTimeout("t"), "lookup", Transient("timeout")),
        (httpx.ConnectError("refused"), "onboard", Transient("connect")),
        (httpx.ConnectTimeout("t"), "onboard", Transient("timeout")),
        (httpx.PoolTimeout("t"), "onboard", Transient("pool_timeout")),
        (httpx.ReadError("reset"), "onboard", Transient("reset", in_doubt=True)),
        (httpx.WriteError("reset"), "onboard", Transient("reset", in_doubt=True)),
        (httpx.RemoteProtocolError("closed"), "onboard",
         Transient("disconnected", in_doubt=True)),
        (httpx.RemoteProtocolError("closed"), "status", Transient("disconnected")),
    ],
)
def test_transport_failures_are_transient_and_in_doubt_only_if_maybe_sent(
    exc: Exception, call: str, expected: Transient
) -> None:
    """No answer → Transient; an onboarding create is in doubt unless it never left."""
    actions: dict[str, Callable[[PartnerClient], Any]] = {
        "onboard": lambda c: c.onboard(ONBOARD_BODY),
        "lookup": lambda c: c.lookup("4", ID_NUMBER),
        "status": lambda c: c.status("1000000000000005"),
    }
    result, _ = run(raiser(exc), actions[call])
    assert result == expected


def wrapped(cause: Exception, as_: type[httpx.TransportError]) -> httpx.TransportError:
    """An httpx error raised from an aiohttp one, as the aiohttp transport does."""
    try:
        try:
            raise cause
        except Exception as inner:
            raise as_(str(inner)) from inner
    except httpx.TransportError as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        # The aiohttp transport maps all of these to ConnectTimeout: the cause decides.
        (wrapped(aiohttp.ServerDisconnectedError(), httpx.ConnectTimeout),
         ("disconnected", True)),
        (wrapped(aiohttp.ClientOSError(104, "reset"), httpx.ConnectTimeout),
         ("connection", True)),
        (wrapped(aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout), ("timeout", False)),
        (wrapped(aiohttp.SocketTimeoutError(), httpx.ReadTimeout), ("timeout", True)),
        (wrapped(aiohttp.ClientConnectorError(
            aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None),
            OSError(111, "refused")), httpx.ConnectTimeout), ("connect", False)),
        (httpx.ConnectTimeout("t"), ("timeout", False)),
        (httpx.UnsupportedProtocol("ftp"), ("transport", True)),
    ],
)
def test_transport_failure_reads_the_aiohttp_cause(
    exc: httpx.TransportError, expected: tuple[str, bool]
) -> None:
    """A dropped connection under the aiohttp transport counts as maybe-sent, a refused one not."""
    assert transport_failure(exc) == expected


def test_rejected_details_survive_the_client() -> None:
    """A 400 with field details reaches the caller as Rejected with those details."""
    body = {"status": "failed", "status_code": 400, "error_code": 45053,
            "message": "bad", "details": {"nationality": "unknown code"}}
    result, _ = run(lambda r: httpx.Response(400, json=body), lambda c: c.onboard(ONBOARD_BODY))
    assert result == Rejected("45053", "bad", {"nationality": "unknown code"}, 400)


def test_logs_carry_no_personal_data_and_a_masked_id() -> None:
    """Request/response events name the call and result; names, phones, e-mails, birth dates,
    tokens and full ID numbers never appear, before or after the masking processor."""
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("validate"):
            return httpx.Response(200, json=FOUND)
        return httpx.Response(406, json={
            "status": "failed", "status_code": 406, "error_code": 45013,
            "message": f"customer {ID_NUMBER} aisha@example.com under investigation"})

    async def both(client: PartnerClient) -> PartnerResult:
        await client.lookup("4", ID_NUMBER)
        return await client.onboard(ONBOARD_BODY)

    with structlog.testing.capture_logs() as events:
        result, _ = run(handler, both)
    assert isinstance(result, Rejected)
    responses = [e for e in events if e["event"] == "partner.response"]
    assert [e["result"] for e in responses] == ["Found", "Rejected"]
    assert {e["id_number"] for e in responses} == {"***6091"}
    raw = repr(events)
    processed = repr([mask_processor(None, "info", dict(e)) for e in events])
    for text in (raw, processed):
        for leaked in ("Aisha", "Khan", "1990-05-17", "554747002", "aisha@example.com",
                       "78419955458", "Bearer", "t1"):
            assert leaked not in text


def test_settings_drive_timeouts_and_transport() -> None:
    """Timeouts come from settings, and http_transport picks httpx's or aiohttp's transport."""
    t = timeout(SETTINGS)
    assert (t.connect, t.read, t.write, t.pool) == (1.5, 7.0, 8.0, 9.0)
    assert isinstance(async_transport(SETTINGS), httpx.AsyncHTTPTransport)
    aio = SETTINGS.model_copy(update={"http_transport": "aiohttp"})
    assert isinstance(async_transport(aio), AiohttpTransport)
