"""The Starlette application: DRAP's four partner calls plus the ``/_sandbox`` admin calls.

Only HTTP glue lives here: counting a request in and out, pacing it with ``asyncio.sleep``
(never blocking the loop), checking the bearer token and drawing faults; what to answer is
decided by ``sandbox.state``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.core.masterdata import MasterDataError
from sandbox import responses
from sandbox.config import SandboxConfig
from sandbox.scenarios import ScenarioError
from sandbox.state import JSON_TYPE, NO_FAULTS, Faults, OnboardRequest, Reply, SandboxState

TOKEN_PATH = "/auth/realms/cdp/protocol/openid-connect/token"  # noqa: S105
LOOKUP_PATH = "/caas/api/v2/customer/validate"
ONBOARD_PATH = "/caas-lcm/api/v1/CAAS/onBoarding/customer"
STATUS_PATH = "/caas/api/v2/customer/{ecrn}"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Call:
    """One partner call as the handlers see it."""

    path: str
    authorization: str | None
    body: bytes
    path_params: dict[str, Any]


Handler = Callable[[Call, Faults], Awaitable[Reply]]


async def pace(seconds: float) -> None:
    """Wait without blocking the event loop (other calls go on meanwhile)."""
    if seconds > 0:
        await asyncio.sleep(seconds)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _authorization(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


class PartnerEndpoint:
    """ASGI endpoint of one partner call: counts it, applies the rate cap and latency, checks
    the bearer token, draws faults, then lets its handler answer.

    A bare ASGI callable rather than a Starlette request handler because at thousands of
    calls per second Starlette's Request/Response wrappers cost as much CPU as the call.
    """

    def __init__(self, state: SandboxState, name: str, handler: Handler) -> None:
        self.state = state
        self.name = name
        self.handler = handler
        self.business = name != "token"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one HTTP request (ASGI)."""
        call = Call(
            scope["path"], _authorization(scope), await _read_body(receive),
            scope.get("path_params", {}),
        )  # fmt: skip
        reply = await self.answer(call)
        headers = [
            (b"content-type", JSON_TYPE.encode()),
            (b"content-length", str(len(reply.body)).encode()),
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def answer(self, call: Call) -> Reply:
        """The reply to one call, counted in and out of the stats."""
        stats = self.state.stats
        now = time.monotonic()
        stats.started(self.business, now)
        status = 500
        try:
            reply = await (self._business(call, now) if self.business else self._token(call))
            status = reply.status
            return reply
        finally:
            stats.finished(self.name, status)

    async def _business(self, call: Call, now: float) -> Reply:
        state = self.state
        limited = state.rate_limited(call.path, now)
        await pace(state.latency())
        if limited is not None:
            return limited
        if not state.authorized(call.authorization, time.monotonic()):
            return Reply(401, responses.gateway_error(401, "Unauthorized", call.path))
        return await self._faulted(call)

    async def _token(self, call: Call) -> Reply:
        if not self.state.config.faults_on_token:
            return await self.handler(call, NO_FAULTS)
        await pace(self.state.latency())
        return await self._faulted(call)

    async def _faulted(self, call: Call) -> Reply:
        state = self.state
        faults = state.draw_faults(self.name)
        if faults is NO_FAULTS:
            return await self.handler(call, faults)
        forced = state.fault_reply(faults, call.path)
        if forced is not None:
            return forced
        if faults.timeout:
            await pace(state.config.timeout_hang_s)
            return Reply(502, responses.BACKEND_502)
        return await self.handler(call, faults)


def create_app(config: SandboxConfig) -> Starlette:
    """Build the sandbox application with a fresh state (raises MasterDataError or
    ScenarioError when a data file named by ``config`` is unusable)."""
    state = SandboxState(config)

    async def token(call: Call, faults: Faults) -> Reply:
        form = dict(parse_qsl(call.body.decode("utf-8", errors="replace"), keep_blank_values=True))
        return state.token(form, time.monotonic())

    async def lookup(call: Call, faults: Faults) -> Reply:
        parsed = state.parse_lookup(call.body)
        if isinstance(parsed, Reply):
            return parsed
        await pace(state.delay_for(parsed[1]))
        return state.lookup(parsed[0], parsed[1], faults)

    async def onboard(call: Call, faults: Faults) -> Reply:
        parsed = state.parse_onboard(call.body)
        if not isinstance(parsed, OnboardRequest):
            return parsed
        await pace(state.delay_for(parsed.id_number))
        return state.onboard(parsed, faults)

    async def status(call: Call, faults: Faults) -> Reply:
        ecrn = str(call.path_params["ecrn"])
        await pace(state.delay_for(state.id_number_of(ecrn)))
        return state.status(ecrn)

    async def stats(request: Request) -> Response:
        return JSONResponse(state.snapshot())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    async def revoke(request: Request) -> Response:
        state.tokens.revoke_all()
        return JSONResponse({"revoked": True})

    async def get_config(request: Request) -> Response:
        return JSONResponse(state.config.public())

    async def set_config(request: Request) -> Response:
        changes: Any = await _json_body(request)
        if not isinstance(changes, dict):
            return JSONResponse({"error": "body must be a JSON object of knobs"}, 400)
        try:
            new = state.reconfigure(changes)
        except ValidationError as exc:
            return JSONResponse({"error": describe_validation_error(exc)}, 400)
        except (MasterDataError, ScenarioError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(new.public())

    app = Starlette(
        routes=[
            Route(TOKEN_PATH, PartnerEndpoint(state, "token", token), methods=["POST"]),
            Route(LOOKUP_PATH, PartnerEndpoint(state, "lookup", lookup), methods=["POST"]),
            Route(ONBOARD_PATH, PartnerEndpoint(state, "onboard", onboard), methods=["POST"]),
            Route(STATUS_PATH, PartnerEndpoint(state, "status", status), methods=["GET"]),
            Route("/_sandbox/stats", stats, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/revoke", revoke, methods=["POST"]),
            Route("/_sandbox/config", get_config, methods=["GET"]),
            Route("/_sandbox/config", set_config, methods=["POST"]),
        ]
    )
    app.state.sandbox = state
    return app


async def _json_body(request: Request) -> object:
    try:
        return await request.json()
    except ValueError:
        return None


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad knob and its problem."""
    parts = []
    for error in exc.errors():
        knob = ".".join(str(p) for p in error["loc"]) or "config"
        parts.append(f"{knob}: {error['msg']}")
    return "; ".join(parts)
