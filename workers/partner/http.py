"""HTTP clients for the partner calls, built from settings in one place, and transport failures.

Both the async business client and the sync token client get their timeouts, pool size and TLS
verification from :class:`~pipeline.core.settings.PartnerSettings` here, so the two never drift.

:class:`AiohttpSession` is the business calls' hot path when ``http_transport`` is "aiohttp":
aiohttp driven directly, without building an httpx request and response around every call
(that wrapping cost more CPU per call than aiohttp itself; bench/throughput.py measures it).
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
import httpx
from multidict import CIMultiDictProxy
from yarl import URL

from pipeline.core.settings import PartnerSettings


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


class AiohttpSession:
    """One aiohttp session for the business calls, with the settings' timeouts and pool size.

    The session (and its connection pool) is opened on first use, inside the event loop that
    uses it. Failures are aiohttp's own exceptions (or ``TimeoutError``); map them with
    :func:`aiohttp_failure`.
    """

    def __init__(self, settings: PartnerSettings) -> None:
        self._base = settings.base_url.rstrip("/")
        self._settings = settings
        # aiohttp's "connect" covers waiting for a pooled connection plus connecting; the
        # socket connect alone has its own limit, as in httpx. aiohttp has no write timeout.
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=settings.pool_timeout + settings.connect_timeout,
            sock_connect=settings.connect_timeout,
            sock_read=settings.read_timeout,
        )
        self._session: aiohttp.ClientSession | None = None
        # Parsed once per path: yarl parsing is a visible share of a request's CPU.
        self._urls: dict[str, URL] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._settings.max_connections, ssl=self._settings.verify_tls
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, auto_decompress=True
        )
        return self._session

    def url(self, path: str) -> URL:
        """The absolute URL of ``path`` under the base URL (cached)."""
        url = self._urls.get(path)
        if url is None:
            url = URL(self._base + path)
            if len(self._urls) < 64:  # status paths vary per ecrn: keep the cache small
                self._urls[path] = url
        return url

    async def request(
        self, method: str, path: str, data: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes, CIMultiDictProxy[str]]:
        """Send one request; returns (status, body, headers). Raises aiohttp's errors."""
        session = self._session or self._open()
        async with session.request(
            method, self.url(path), data=data, headers=headers, allow_redirects=False
        ) as response:
            content = await response.read()
            return response.status, content, response.headers

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


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
        return aiohttp_failure(cause)
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


def aiohttp_failure(exc: aiohttp.ClientError | TimeoutError) -> tuple[str, bool]:
    """``(reason, may_have_been_sent)`` for an aiohttp failure (see :func:`transport_failure`).

    aiohttp's "connect" timeout also covers the wait for a pooled connection: either way the
    request never left.
    """
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect", False
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "timeout", False
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return "timeout", True
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected", True
    return "connection", True
