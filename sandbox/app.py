"""The Starlette application: DRAP's four partner calls plus the ``/_sandbox`` admin calls.

Only HTTP glue lives here: counting a request in and out, pacing it with ``asyncio.sleep``
(never blocking the loop), checking the bearer token and drawing faults; what to answer is
decided by ``sandbox.state``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.masterdata import MasterDataError
from sandbox import responses
from sandbox.config import SandboxConfig
from sandbox.scenarios import ScenarioError
from sandbox.state import JSON_TYPE, NO_FAULTS, Faults, OnboardRequest, Reply, SandboxState

TOKEN_PATH = "/auth/realms/cdp/protocol/openid-connect/token"  # noqa: S105
LOOKUP_PATH = "/caas/api/v2/customer/validate"
ONBOARD_PATH = "/caas-lcm/api/v1/CAAS/onBoarding/customer"
STATUS_PATH = "/caas/api/v2/customer/{ecrn}"

Handler = Callable[[Request, Faults], Awaitable[Reply]]


def _response(reply: Reply) -> Response:
    return Response(reply.body, reply.status, reply.headers or None, media_type=JSON_TYPE)


def create_app(config: SandboxConfig) -> Starlette:
    """Build the sandbox application with a fresh state (raises MasterDataError or
    ScenarioError when a data file named by ``config`` is unusable)."""
    state = SandboxState(config)

    async def pace(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def business(request: Request, endpoint: str, handler: Handler) -> Response:
        """Run one business call through the rate cap, latency, token check and faults."""
        now = time.monotonic()
        state.stats.started(True, now)
        status = 500
        try:
            limited = state.rate_limited(request.url.path, now)
            await pace(state.latency())
            if limited is not None:
                reply = limited
            elif not state.authorized(request.headers.get("authorization"), time.monotonic()):
                body = responses.gateway_error(401, "Unauthorized", request.url.path)
                reply = Reply(401, body)
            else:
                reply = await faulted(request, endpoint, handler)
            status = reply.status
            return _response(reply)
        finally:
            state.stats.finished(endpoint, status)

    async def faulted(request: Request, endpoint: str, handler: Handler) -> Reply:
        faults = state.draw_faults(endpoint)
        if faults is NO_FAULTS:
            return await handler(request, faults)
        forced = state.fault_reply(faults, request.url.path)
        if forced is not None:
            return forced
        if faults.timeout:
            await pace(state.config.timeout_hang_s)
            return Reply(502, responses.BACKEND_502)
        return await handler(request, faults)

    async def lookup_handler(request: Request, faults: Faults) -> Reply:
        parsed = state.parse_lookup(await request.body())
        if isinstance(parsed, Reply):
            return parsed
        await pace(state.delay_for(parsed[1]))
        return state.lookup(parsed[0], parsed[1], faults)

    async def onboard_handler(request: Request, faults: Faults) -> Reply:
        parsed = state.parse_onboard(await request.body())
        if not isinstance(parsed, OnboardRequest):
            return parsed
        await pace(state.delay_for(parsed.id_number))
        return state.onboard(parsed, faults)

    async def status_handler(request: Request, faults: Faults) -> Reply:
        ecrn = str(request.path_params["ecrn"])
        await pace(state.delay_for(state.id_number_of(ecrn)))
        return state.status(ecrn)

    async def lookup(request: Request) -> Response:
        return await business(request, "lookup", lookup_handler)

    async def onboard(request: Request) -> Response:
        return await business(request, "onboard", onboard_handler)

    async def status(request: Request) -> Response:
        return await business(request, "status", status_handler)

    async def token_handler(request: Request, faults: Faults) -> Reply:
        raw = (await request.body()).decode("utf-8", errors="replace")
        form = dict(parse_qsl(raw, keep_blank_values=True))
        return state.token(form, time.monotonic())

    async def token(request: Request) -> Response:
        if state.config.faults_on_token:
            return await business_token(request)
        state.stats.started(False, time.monotonic())
        status = 500
        try:
            reply = await token_handler(request, NO_FAULTS)
            status = reply.status
            return _response(reply)
        finally:
            state.stats.finished("token", status)

    async def business_token(request: Request) -> Response:
        """The token endpoint with latency and faults, when ``faults_on_token`` is on."""
        state.stats.started(False, time.monotonic())
        status = 500
        try:
            await pace(state.latency())
            reply = await faulted(request, "token", token_handler)
            status = reply.status
            return _response(reply)
        finally:
            state.stats.finished("token", status)

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
            Route(TOKEN_PATH, token, methods=["POST"]),
            Route(LOOKUP_PATH, lookup, methods=["POST"]),
            Route(ONBOARD_PATH, onboard, methods=["POST"]),
            Route(STATUS_PATH, status, methods=["GET"]),
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
