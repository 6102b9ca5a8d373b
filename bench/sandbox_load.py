"""Load the sandbox with concurrent lookups and onboardings; print the throughput it sustains.

Usage: ``python bench/sandbox_load.py [--seconds 10] [--concurrency 128] [--latency-ms 50]``.
The client is aiohttp (the fastest client measured on this box) so the figure is the
server's, not httpx's; the ceiling is concurrency / latency (e.g. 128 / 50 ms = 2,560 req/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp
import psutil

from sandbox.testing import LOOKUP_PATH, ONBOARD_PATH, run_sandbox


def onboard_body(n: int) -> dict[str, object]:
    return {
        "channel": "BENCH",
        "agent_location_id": "B1",
        "first_name": "Bench",
        "last_name": "Load",
        "nationality": "AE",
        "date_of_birth": "1990-01-01",
        "country_of_birth": "AE",
        "country_of_residence": "AE",
        "gender": "M",
        "primary_mobile_number": "+971500000001",
        "occupation_id": "1",
        "address_list": [{"address_type_id": "1", "city": "Dubai", "country": "AE"}],
        "id_details": [
            {
                "id_type": "1",
                "id_number": f"B{n:09d}",
                "issued_country": "AE",
                "date_of_expiry": "2031-01-01",
            }
        ],
    }


async def load(base_url: str, token: str, seconds: float, concurrency: int) -> tuple[int, int]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    done = 0
    errors = 0
    counter = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url, connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal done, errors, counter
            while time.monotonic() < deadline:
                counter += 1
                n = counter
                if n % 2:
                    payload = {"idType": "1", "idNumber": f"B{n:09d}"}
                    path = LOOKUP_PATH
                else:
                    payload = onboard_body(n)
                    path = ONBOARD_PATH
                async with session.post(path, data=json.dumps(payload)) as response:
                    await response.read()
                    done += 1
                    errors += response.status != 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    with run_sandbox(latency_ms=args.latency_ms) as sandbox:
        token = sandbox.password_grant()["access_token"]
        server = psutil.Process(sandbox.process.pid)
        cpu_before = sum(server.cpu_times()[:2])
        started = time.perf_counter()
        client_before = time.process_time()
        done, errors = asyncio.run(load(sandbox.base_url, token, args.seconds, args.concurrency))
        elapsed = time.perf_counter() - started
        server_cpu = sum(server.cpu_times()[:2]) - cpu_before
        client_cpu = time.process_time() - client_before
        stats = sandbox.stats()
    ceiling = args.concurrency / (args.latency_ms / 1000) if args.latency_ms else float("inf")
    print(f"latency {args.latency_ms:.0f} ms, {args.concurrency} in flight, {elapsed:.1f} s")
    print(f"requests      {done} ({errors} not 200)")
    print(f"throughput    {done / elapsed:,.0f} req/s (ceiling {ceiling:,.0f})")
    print(
        f"server CPU    {server_cpu:.2f} s = {server_cpu / done * 1e6:.0f} us/request "
        f"(one core's worth: {done / server_cpu:,.0f} req/s)"
    )
    print(f"client CPU    {client_cpu:.2f} s = {client_cpu / done * 1e6:.0f} us/request")
    print(f"peak in flight {stats['peak_concurrency']}, peak rps {stats['peak_rps']}")
    print(f"creates {stats['creates']}, customers {stats['customers']}")


if __name__ == "__main__":
    main()
