"""Coalescing of script calls on one event loop into pipelines.

Concurrent rows each run a script or two per customer; sent one by one, each call costs a
round trip of client CPU. Calls made while a round trip is under way go to Redis together
as one pipeline, so under load a row costs a fraction of a round trip's client CPU
(bench/throughput.py).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError
from redis.typing import EncodableT

_Pending = tuple[AsyncScript, Sequence[str], Sequence[EncodableT], "asyncio.Future[Any]"]


class ScriptBatcher:
    """Script calls of one event loop sent as pipelines: one round trip for all the calls
    made while the previous one was under way (or in the same loop turn).

    Each call still gets its own answer or its own error; a lost connection fails every call
    of that pipeline, as it would have failed them one by one. Use it from one event loop;
    :meth:`of` gives every user of one client (the store, the rate limiter) the same batcher,
    so their calls share round trips too.
    """

    @classmethod
    def of(cls, client: redis.asyncio.Redis) -> ScriptBatcher:
        """The batcher of ``client`` (made on first use, gone with the client)."""
        batcher = _BATCHERS.get(client)
        if batcher is None:
            batcher = _BATCHERS[client] = cls(client)
        return batcher

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._r = client
        self._pending: list[_Pending] = []
        self._sender: asyncio.Task[None] | None = None
        self.round_trips = 0

    async def call(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[EncodableT]
    ) -> Any:
        """Run ``script`` with ``keys`` and ``args`` in the next pipeline; its answer."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, future))
        if self._sender is None:
            self._sender = loop.create_task(self._send_all())
        return await future

    async def _send_all(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._send(batch)
        except BaseException as exc:
            # Cancelled (loop shutting down): nobody may wait forever on a lost answer.
            for *_, future in self._pending:
                if not future.done():
                    future.set_exception(exc)
            self._pending = []
            raise
        finally:
            self._sender = None

    async def _send(self, batch: list[_Pending]) -> None:
        self.round_trips += 1
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                for script, keys, args, _ in batch:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                answers = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, Exception):
                return
            raise
        for (script, keys, args, future), answer in zip(batch, answers, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(answer, NoScriptError):
                # First use on this server (or after SCRIPT FLUSH): the script loads itself.
                try:
                    future.set_result(await script(keys=keys, args=args))
                except Exception as exc:
                    future.set_exception(exc)
            elif isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)


_BATCHERS: weakref.WeakKeyDictionary[redis.asyncio.Redis, ScriptBatcher] = (
    weakref.WeakKeyDictionary()
)
