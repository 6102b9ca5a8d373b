"""HTTP clients for the partner calls, built from settings in one place, and transport failures.

Both the async business client and the sync token client get their timeouts, pool size and TLS
verification from :class:`~pipeline.settings.PartnerSettings` here, so the two never drift.
"""

from __future__ import annotations

import aiohttp
import httpx

from pipeline.settings import PartnerSettings


def timeout(settings: PartnerSettings) -> httpx.Timeout:
    """Explicit connect/read/write/pool timeouts: httpx's 5 s default is no policy."""
    return httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.write_timeout,
        pool=settings.pool_timeout,
    )


def limits(settings: PartnerSettings) -> httpx.Limits:
    """Pool limits: keep every connection alive, since the pool is sized to the concurrency."""
    return httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_connections,
    )


def async_transport(settings: PartnerSettings) -> httpx.AsyncBaseTransport:
    """The transport named by ``settings.http_transport`` (aiohttp's is much faster at load)."""
    if settings.http_transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport: httpx.AsyncBaseTransport = AiohttpTransport(
            verify=settings.verify_tls, limits=limits(settings)
        )
        return transport
    return httpx.AsyncHTTPTransport(verify=settings.verify_tls, limits=limits(settings))


def async_client(
    settings: PartnerSettings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """An AsyncClient for the business calls. Create it inside the process and loop using it."""
    return httpx.AsyncClient(
        base_url=settings.base_url,
        timeout=timeout(settings),
        verify=settings.verify_tls,
        transport=transport if transport is not None else async_transport(settings),
        headers={"Accept": "application/json"},
    )


def sync_client(
    settings: PartnerSettings, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """A small sync Client for the token calls (a few per token lifetime)."""
    return httpx.Client(
        base_url=settings.base_url,
        timeout=timeout(settings),
        verify=settings.verify_tls,
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
        transport=transport,
        headers={"Accept": "application/json"},
    )


def transport_failure(exc: httpx.TransportError) -> tuple[str, bool]:
    """``(reason, may_have_been_sent)`` for a request that got no HTTP answer.

    ``may_have_been_sent`` is False only when the request provably never left this process
    (no connection, or no free pooled connection). The aiohttp transport reports most of its
    failures as ``ConnectTimeout``, a dropped connection after sending included, so its
    original exception decides instead.
    """
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError):
        if isinstance(cause, aiohttp.ClientConnectorError):
            return "connect", False
        if isinstance(cause, aiohttp.ConnectionTimeoutError):
            return "timeout", False
        if isinstance(cause, aiohttp.ServerTimeoutError):
            return "timeout", True
        if isinstance(cause, aiohttp.ServerDisconnectedError):
            return "disconnected", True
        return "connection", True
    if isinstance(exc, httpx.PoolTimeout):
        return "pool_timeout", False
    if isinstance(exc, httpx.ConnectTimeout):
        return "timeout", False
    if isinstance(exc, httpx.ConnectError):
        return "connect", False
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", True
    if isinstance(exc, httpx.RemoteProtocolError):
        return "disconnected", True
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return "reset", True
    return "transport", True
