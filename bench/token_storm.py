"""Token storm: what the shared token costs per request, and how many grants a storm makes.

Starts a sandbox (short token lifetime) and uses a real Redis. Prints:

1. the added latency of the token layer per call, warm, in one process: ``TokenBroker.get()``
   and ``aget()`` (memory fast path) against a Redis GET per call;
2. a storm of P processes × T threads (each thread its own event loop and PartnerClient, one
   broker per process) calling lookup for D seconds across several token lifetimes, twice:
   with the broker's memory copy ("memory") and with a Redis read per request ("redis"). For
   each: requests, failures, token grants per lifetime, invalid_grant count and the p50/p99
   time spent getting the token per request;
3. the throughput of one PartnerClient per ``http_transport`` (httpx's pool vs aiohttp's) at
   100 requests in flight and 50 ms partner latency, which chose the default.

    .venv/bin/python bench/token_storm.py [--processes 4 --threads 8 --seconds 6 --token-ttl 2]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.core.logs import configure_logging
from pipeline.core.settings import PartnerSettings
from sandbox.testing import CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME, run_sandbox
from workers.partner.client import PartnerClient
from workers.partner.token import TokenBroker, TokenRecord

KEY = "bench:token"
EXISTING = "784198090000005"


def settings_for(base_url: str) -> PartnerSettings:
    return PartnerSettings(
        base_url=base_url, client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET),
        username=USERNAME, password=SecretStr(PASSWORD), scope="bench",
    )


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class RedisEveryRequest:
    """The approach the broker avoids: read the shared token from Redis on every request."""

    def __init__(self, redis_url: str, broker: TokenBroker) -> None:
        self._redis = aredis.Redis.from_url(redis_url)
        self._broker = broker

    async def aget(self) -> str:
        """The token as stored in Redis; the broker renews it when it is due."""
        raw = await self._redis.get(KEY)
        record = TokenRecord.from_json(raw) if raw is not None else None
        if record is not None and time.time() < record.expires_at - 0.2 * record.lifetime:
            return record.access_token
        return await self._broker.aget()

    async def arefresh(self, failed_token: str) -> str:
        """Renewal after a 401 goes through the broker."""
        return await self._broker.arefresh(failed_token)


class Timed:
    """Wraps a token source and records how long each aget() took."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.samples: list[float] = []

    async def aget(self) -> str:
        """The inner source's token, timed."""
        started = time.perf_counter()
        token: str = await self.inner.aget()
        self.samples.append(time.perf_counter() - started)
        return token

    async def arefresh(self, failed_token: str) -> str:
        """The inner source's renewal (not timed: it is a grant, not the per-request cost)."""
        token: str = await self.inner.arefresh(failed_token)
        return token


def warm_latency(base_url: str, redis_url: str, calls: int) -> None:
    client = redis.Redis.from_url(redis_url)
    client.delete(KEY)
    broker = TokenBroker(client, settings_for(base_url), key_prefix=KEY)
    broker.get()
    reads_before = broker.redis_reads

    def timed_sync(fn: Any) -> list[float]:
        out = []
        for _ in range(calls):
            started = time.perf_counter()
            fn()
            out.append(time.perf_counter() - started)
        return out

    get_samples = timed_sync(broker.get)
    get_reads = broker.redis_reads - reads_before
    redis_samples = timed_sync(lambda: TokenRecord.from_json(client.get(KEY)))  # type: ignore[arg-type]

    async def async_samples() -> tuple[list[float], list[float]]:
        per_request = RedisEveryRequest(redis_url, broker)
        memory, remote = [], []
        for _ in range(calls):
            started = time.perf_counter()
            await broker.aget()
            memory.append(time.perf_counter() - started)
        for _ in range(calls):
            started = time.perf_counter()
            await per_request.aget()
            remote.append(time.perf_counter() - started)
        return memory, remote

    aget_samples, aredis_samples = asyncio.run(async_samples())
    print(f"\n1. token layer per call, warm, {calls:,} calls each (microseconds)")
    print(f"   {'approach':34} {'p50':>9} {'p99':>9}")
    for name, samples in (
        ("TokenBroker.get() (memory)", get_samples),
        ("TokenBroker.aget() (memory)", aget_samples),
        ("sync Redis GET per call", redis_samples),
        ("async Redis GET per call", aredis_samples),
    ):
        print(f"   {name:34} {pct(samples, 0.5) * 1e6:9.2f} {pct(samples, 0.99) * 1e6:9.2f}")
    print(f"   Redis reads by the broker during its {calls:,} get() calls: {get_reads}")
    broker.close()


def storm_process(
    mode: str, base_url: str, redis_url: str, threads: int, seconds: float, start: Any, out: Any
) -> None:
    configure_logging("WARNING")
    settings = settings_for(base_url)
    broker = TokenBroker(redis.Redis.from_url(redis_url), settings, key_prefix=KEY)
    results: Counter[str] = Counter()
    samples: list[float] = []
    lock = threading.Lock()

    def thread_main() -> None:
        async def loop() -> None:
            source = Timed(broker if mode == "memory" else RedisEveryRequest(redis_url, broker))
            async with PartnerClient(settings, source) as client:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    result = await client.lookup("4", EXISTING)
                    with lock:
                        results[type(result).__name__] += 1
            with lock:
                samples.extend(source.samples)

        asyncio.run(loop())

    workers = [threading.Thread(target=thread_main) for _ in range(threads)]
    start.wait(timeout=120)
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    broker.close()
    step = max(1, len(samples) // 20000)
    out.put({"results": dict(results), "grants": broker.grants, "samples": samples[::step]})


def storm(sandbox: Any, redis_url: str, mode: str, args: argparse.Namespace) -> None:
    redis.Redis.from_url(redis_url).delete(KEY, KEY + ":lock")
    sandbox.reset()
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(args.processes + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=storm_process,
                    args=(mode, sandbox.base_url, redis_url, args.threads, args.seconds,
                          start, out))
        for _ in range(args.processes)
    ]
    for p in procs:
        p.start()
    start.wait(timeout=120)
    began = time.monotonic()
    reports = [out.get(timeout=args.seconds + 60) for _ in procs]
    elapsed = time.monotonic() - began
    for p in procs:
        p.join(timeout=10)
    stats = sandbox.stats()
    results: Counter[str] = Counter()
    samples: list[float] = []
    for report in reports:
        results.update(report["results"])
        samples.extend(report["samples"])
    grants = stats["grants"]["password"] + stats["grants"]["refresh"]
    lifetimes = math.ceil(elapsed / args.token_ttl)
    total = sum(results.values())
    failed = total - results.get("Found", 0)
    print(f"   {mode:7} {total:9,} {total / elapsed:8,.0f} {failed:7} "
          f"{stats['grants']['password']:4}/{stats['grants']['refresh']:<4} {lifetimes:9} "
          f"{grants / lifetimes:10.2f} {stats['token_errors'].get('invalid_grant', 0):8} "
          f"{pct(samples, 0.5) * 1e3:8.3f} {pct(samples, 0.99) * 1e3:8.3f}")
    if results.get("Unauthorized"):
        print(f"           unauthorized results: {results['Unauthorized']}")


def transports(sandbox: Any, redis_url: str, requests: int, args_ttl: int) -> None:
    # A long token here: with httpx's slow pool a request can wait longer than a 2 s token
    # lives between getting its token and being sent, which is not what this part measures.
    sandbox.configure(latency_ms=50, token_ttl=3600)
    redis.Redis.from_url(redis_url).delete(KEY, KEY + ":lock")
    print(f"\n3. one PartnerClient, 100 requests in flight, sandbox latency 50 ms, "
          f"{requests:,} lookups")
    for name in ("httpx", "aiohttp"):
        settings = settings_for(sandbox.base_url).model_copy(update={"http_transport": name})
        broker = TokenBroker(redis.Redis.from_url(redis_url), settings, key_prefix=KEY)

        async def run(
            settings: PartnerSettings, broker: TokenBroker
        ) -> tuple[float, Counter[str]]:
            async with PartnerClient(settings, broker) as client:
                limit = asyncio.Semaphore(100)

                async def one() -> str:
                    async with limit:
                        return type(await client.lookup("4", EXISTING)).__name__

                await client.lookup("4", EXISTING)
                started = time.perf_counter()
                names = await asyncio.gather(*(one() for _ in range(requests)))
                return time.perf_counter() - started, Counter(names)

        elapsed, names = asyncio.run(run(settings, broker))
        broker.close()
        print(f"   http_transport={name:8} {requests / elapsed:8,.0f} req/s  {dict(names)}")
    sandbox.configure(latency_ms=0, token_ttl=args_ttl)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--token-ttl", type=int, default=2)
    parser.add_argument("--calls", type=int, default=20000, help="calls for the warm figures")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--transports", type=int, default=3000, metavar="N",
                        help="lookups per transport in part 3 (0 skips it)")
    args = parser.parse_args()
    configure_logging("WARNING")
    with run_sandbox(token_ttl=args.token_ttl) as sandbox:
        print(f"sandbox {sandbox.base_url}, token TTL {args.token_ttl} s, Redis {args.redis_url}")
        warm_latency(sandbox.base_url, args.redis_url, args.calls)
        print(f"\n2. storm: {args.processes} processes × {args.threads} threads, lookup for "
              f"{args.seconds} s, token TTL {args.token_ttl} s "
              "(token ms = time to get the token, per request)")
        print(f"   {'mode':7} {'requests':>9} {'req/s':>8} {'failed':>7} {'pw/refr':>9} "
              f"{'lifetimes':>9} {'grants/lt':>10} {'inv_grant':>8} {'token p50':>8} "
              f"{'p99 ms':>8}")
        for mode in ("memory", "redis"):
            storm(sandbox, args.redis_url, mode, args)
        print("   (p99 in the storm includes GIL preemption between the threads of a process;"
              " the warm figures above isolate the token layer)")
        if args.transports:
            transports(sandbox, args.redis_url, args.transports, args.token_ttl)


if __name__ == "__main__":
    main()
