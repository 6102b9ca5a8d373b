"""The async client for DRAP's business calls: lookup, onboarding and the status GET.

Every answer becomes a typed result through :func:`workers.partner.responses.classify`; a
request that gets no answer becomes ``Transient`` (``in_doubt`` for an onboarding create that
may have been sent). A 401 makes the broker renew the token (only if the refused token is still
current) and the request is repeated once; a second 401 is returned as ``Unauthorized``,
never looped.

One ``PartnerClient`` per process *and* event loop: its connection pool belongs to the loop it
first runs on, and sockets must never be shared across a fork. Create it inside the worker
process (e.g. in a ``worker_process_init`` handler or lazily in the task), never in the parent
before forking; the client refuses to run in a process other than the one that built it.

Per call, the client only encodes the body and sends it: headers are built once per token, URLs
once per path, and with the default "aiohttp" transport the request goes straight to aiohttp
(an httpx request and response around each call cost more CPU than the call itself).

Logging: one ``partner.request`` (debug) and one ``partner.response`` line per request, with
the call, HTTP status, result type, business code, request id and elapsed time. Bodies are
never logged; the ID number appears with its last 4 digits only.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import httpx
import structlog

from pipeline.core.logs import mask_id
from pipeline.core.settings import PartnerSettings
from workers.partner.http import AiohttpSession, aiohttp_failure, async_client, transport_failure
from workers.partner.responses import (
    Call,
    Found,
    NotFound,
    Onboarded,
    PartnerResult,
    Rejected,
    Status,
    Transient,
    Unauthorized,
    classify,
)
from workers.partner.token import TokenError

log = structlog.get_logger(__name__)


class TokenSource(Protocol):
    """What the client needs from a token broker (``workers.partner.token.TokenBroker`` is one)."""

    async def aget(self) -> str:
        """The current access token."""
        ...

    async def arefresh(self, failed_token: str) -> str:
        """A token other than ``failed_token``, renewing only if it is still current."""
        ...


_QUIET = (Found, NotFound, Onboarded, Status)


class PartnerClient:
    """Async client of the partner's business calls, sharing the process's token broker.

    ``broker`` is normally the process's :class:`~workers.partner.token.TokenBroker`.
    ``transport`` replaces the HTTP transport (tests pass ``httpx.MockTransport``); by default
    it is chosen by ``settings.http_transport``: "aiohttp" (the default) sends through
    :class:`~workers.partner.http.AiohttpSession`, "httpx" through httpx's own pool.
    """

    def __init__(
        self,
        settings: PartnerSettings,
        broker: TokenSource,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._broker = broker
        self._pid = os.getpid()
        self._aio: AiohttpSession | None = None
        self._http: httpx.AsyncClient | None = None
        if transport is None and settings.http_transport == "aiohttp":
            self._aio = AiohttpSession(settings)
        else:
            self._http = async_client(settings, transport)
        self._headers: dict[str, str] = {}
        self._headers_token = ""
        # Asked once: skipped debug events then cost nothing per request. Logging is
        # configured when a process starts, before its client is built.
        self._debug = _debug_enabled()

    async def __aenter__(self) -> PartnerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._aio is not None:
            await self._aio.aclose()
        if self._http is not None:
            await self._http.aclose()

    async def lookup(self, id_type: str, id_number: str) -> PartnerResult:
        """Look a customer up by ID: Found, NotFound, NotSubscribed, Rejected, Transient, ..."""
        return await self._call(
            "lookup", "POST", self._settings.lookup_path,
            {"idType": id_type, "idNumber": id_number},
            {"id_type": id_type, "id_number": mask_id(id_number)},
        )

    async def onboard(self, body: Mapping[str, Any]) -> PartnerResult:
        """Create (or, with ``ecrn``, update) one customer: Onboarded, Rejected, Transient, ...

        A ``Transient`` with ``in_doubt=True`` means the create may have landed: look up
        before sending it again.
        """
        fields: dict[str, Any] = {"update": bool(body.get("ecrn"))}
        ids = body.get("id_details")
        if isinstance(ids, list) and ids and isinstance(ids[0], Mapping):
            fields["id_type"] = ids[0].get("id_type")
            fields["id_number"] = mask_id(ids[0].get("id_number", ""))
        return await self._call("onboard", "POST", self._settings.onboard_path, body, fields)

    async def status(self, ecrn: str) -> PartnerResult:
        """The customer's current record: Status, NotFound, NotSubscribed, Transient, ..."""
        path = self._settings.status_path.format(ecrn=quote(ecrn, safe=""))
        return await self._call("status", "GET", path, None, {"ecrn": mask_id(ecrn)})

    async def _call(
        self,
        call: Call,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        fields: dict[str, Any],
    ) -> PartnerResult:
        if os.getpid() != self._pid:
            raise RuntimeError(
                "PartnerClient used in a process other than the one that created it: "
                "create one per worker process, after the fork"
            )
        try:
            token = await self._broker.aget()
        except TokenError as exc:
            log.warning("partner.no_token", call=call, error=str(exc), **fields)
            return Transient("token_unavailable")
        result = await self._send(call, method, path, body, token, fields, attempt=1)
        if not isinstance(result, Unauthorized):
            return result
        try:
            renewed = await self._broker.arefresh(token)
        except TokenError as exc:
            log.warning("partner.no_token", call=call, error=str(exc), **fields)
            return Transient("token_unavailable")
        return await self._send(call, method, path, body, renewed, fields, attempt=2)

    async def _send(
        self,
        call: Call,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        token: str,
        fields: dict[str, Any],
        *,
        attempt: int,
    ) -> PartnerResult:
        if self._debug:
            log.debug("partner.request", call=call, method=method, attempt=attempt, **fields)
        started = time.perf_counter()
        if self._aio is not None:
            data = None if body is None else _encode(body)
            try:
                status, content, headers = await self._aio.request(
                    method, path, data, self._auth_headers(token, data is not None)
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                return self._failed(call, attempt, started, fields, exc, *aiohttp_failure(exc))
            result = classify(call, status, content, headers)
        else:
            assert self._http is not None
            try:
                response = await self._http.request(
                    method, path, json=body, headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.TransportError as exc:
                return self._failed(call, attempt, started, fields, exc, *transport_failure(exc))
            status = response.status_code
            result = classify(call, status, response.content, response.headers)
        if isinstance(result, _QUIET):
            if self._debug:
                log.debug("partner.response", **self._event(call, attempt, status, result,
                                                            started, fields))
            return result
        log.info("partner.response", **self._event(call, attempt, status, result, started,
                                                   fields))
        return result

    def _auth_headers(self, token: str, has_body: bool) -> dict[str, str]:
        # Built once per token (hours), not per request.
        if token != self._headers_token:
            self._headers = {
                "Accept": "application/json", "Content-Type": "application/json",
                "Authorization": f"Bearer {token}",
            }  # fmt: skip
            self._headers_token = token
        if has_body:
            return self._headers
        return {k: v for k, v in self._headers.items() if k != "Content-Type"}

    @staticmethod
    def _failed(
        call: Call, attempt: int, started: float, fields: dict[str, Any], exc: BaseException,
        reason: str, sent: bool,
    ) -> Transient:
        failure = Transient(reason, in_doubt=call == "onboard" and sent)
        log.info(
            "partner.response", call=call, attempt=attempt, result="Transient",
            reason=reason, in_doubt=failure.in_doubt, error=type(exc).__name__,
            elapsed_ms=_ms(started), **fields,
        )
        return failure

    @staticmethod
    def _event(
        call: Call, attempt: int, status: int, result: PartnerResult, started: float,
        fields: dict[str, Any],
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "call": call, "attempt": attempt, "http_status": status,
            "result": type(result).__name__, "elapsed_ms": _ms(started), **fields,
        }
        if isinstance(result, Onboarded):
            event["request_id"] = result.request_id
        elif isinstance(result, Rejected):
            event["code"] = result.code
            event["fields"] = sorted(result.details)
        elif isinstance(result, Transient):
            event.update(code=result.code, reason=result.reason, in_doubt=result.in_doubt,
                         retry_after=result.retry_after)
        return event


# One encoder for every body: json.dumps with options builds a new encoder per call.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _encode(body: Mapping[str, Any]) -> bytes:
    """The body as httpx's ``json=`` would send it (compact UTF-8 JSON)."""
    return _JSON.encode(body).encode()


def _debug_enabled() -> bool:
    """Whether debug events are logged (a wrapper without the check logs everything)."""
    check = getattr(log, "is_enabled_for", None)
    return True if check is None else bool(check(logging.DEBUG))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
