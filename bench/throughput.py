"""Throughput of the row path against the sandbox, next to a plain aiohttp script.

    .venv/bin/python bench/throughput.py                    # 20,000 rows, 100 in flight, 50 ms
    .venv/bin/python bench/throughput.py --workers 2        # pipeline side on two processes
    .venv/bin/python bench/throughput.py --rows 5000 --skip-baseline --skip-pipeline
    .venv/bin/python bench/throughput.py --submit-rows 1000000   # only the submit figure
    # the worker as before its tuning (alternate with a plain run):
    .venv/bin/python bench/throughput.py --skip-harness --switch-interval 0.005 \
        --asyncio-loop --compression none --serializer json

Every side makes the same two calls per row (lookup, then onboard) for the same rows, at the
same total of requests in flight, against its own fresh sandbox with the same latency:

- **baseline**: a plain asyncio script with one ``aiohttp.ClientSession``, a semaphore of
  ``--in-flight``, and nothing else: no Redis, no retries, no logging (a child process).
- **harness**: the worker's core, :func:`workers.flow.process_row`, over the rows in chunks of
  ``--rows-per-chunk`` (``precheck_many`` per chunk, the chunk's rows concurrently, several
  chunks at once as a worker's task threads would run them), with the real ``PartnerClient``,
  ``TokenBroker``, ``AsyncBatchStore`` and ``AsyncRateLimiter`` on the machine's Redis, and
  JSON logging at INFO (a child process). The limiter's global rate is set high (``--rate``)
  so only the in-flight cap binds: the comparison is about per-row cost, not the quota.
- **pipeline**: ``onboard submit`` of a ``bench/make_customers.py`` file, then ``--workers``
  ``onboard worker`` processes (in flight split between them) until the batch is complete.

Printed: rows/s for each side, the ratio to the baseline (target ≥ 0.8), the theoretical limit
(in flight / latency, two calls per row), CPU per row (the worker's too), token grants, peak
RSS, the Redis bytes of batch state per row and of the queue per queued row.
``--submit-rows N`` times ``onboard submit`` alone (validate + enqueue) on N generated rows,
with its peak RSS.
Batches use Redis databases 13 (harness) and 12 (pipeline) under a fresh key prefix and queue
per run, deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REDIS_URL = "redis://127.0.0.1:6379/13"
# The full pipeline's batches (own key prefix and queue per run) live in their own database.
PIPELINE_REDIS_URL = "redis://127.0.0.1:6379/12"
ONBOARD = str(Path(sys.executable).parent / "onboard")
# `onboard` with the worker's tuning changed, for before/after runs in one tree (argv: a JSON
# object of knobs, then the CLI's argv). Knobs: "switch_interval" (seconds; 0.005 is Python's
# default), "loop" ("asyncio" instead of uvloop), "compression" (a kombu name, or "none"),
# "serializer" (a kombu name: "json" is kombu's own).
ONBOARD_WITH_KNOBS = """
import asyncio, json, sys
import workers.app, workers.runtime
knobs = json.loads(sys.argv[1])
if "switch_interval" in knobs:
    workers.runtime.SWITCH_INTERVAL = knobs["switch_interval"]
if knobs.get("loop") == "asyncio":
    workers.runtime.new_loop = asyncio.new_event_loop
if "compression" in knobs:
    workers.app.COMPRESSION = None if knobs["compression"] == "none" else knobs["compression"]
if "serializer" in knobs:
    workers.app.SERIALIZER = knobs["serializer"]
sys.argv = ["onboard", *sys.argv[2:]]
from pipeline.cli import main
main()
"""


def rows(n: int) -> list[tuple[int, str, dict[str, Any]]]:
    """``n`` rows: (row_number, id_number, body), row numbers from 2 as in a CSV; valid
    synthetic bodies as ``to_partner_body`` would build them."""
    from sandbox.testing import emirates_id, onboarding_body

    ids = [emirates_id(i, birth_year=1975) for i in range(n)]
    return [(i + 2, id_number, onboarding_body(id_number, first_name="Bench"))
            for i, id_number in enumerate(ids)]


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- baseline child ------------------------------------------------------------------------


async def _baseline(base_url: str, token: str, n: int, in_flight: int) -> dict[str, Any]:
    import aiohttp

    from pipeline.core.settings import PartnerSettings

    paths = PartnerSettings()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sem = asyncio.Semaphore(in_flight)
    outcomes: dict[str, int] = {}
    data = rows(n)
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(base_url, connector=connector, headers=headers) as session:

        async def post(path: str, payload: dict[str, Any]) -> dict[str, Any]:
            async with sem, session.post(path, data=json.dumps(payload)) as response:
                answer: dict[str, Any] = json.loads(await response.read())
                return answer

        async def one(id_number: str, payload: dict[str, Any]) -> None:
            found = await post(paths.lookup_path, {"idType": "4", "idNumber": id_number})
            if found.get("errorCode") == 45001:  # not found → create
                created = await post(paths.onboard_path, payload)
                kind = "onboarded" if created.get("data", {}).get("ecrn") else "other"
            else:
                kind = "found" if found.get("status") == "success" else "other"
            outcomes[kind] = outcomes.get(kind, 0) + 1

        started, cpu = time.perf_counter(), cpu_seconds()
        await asyncio.gather(*(one(i, b) for _, i, b in data))
        elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return {"elapsed": elapsed, "cpu": cpu, "outcomes": outcomes}


def baseline_child(args: argparse.Namespace) -> None:
    """Run the aiohttp baseline against ``--base-url``; print a JSON line of figures."""
    import httpx

    from sandbox.testing import TOKEN_PATH, password_form

    form = password_form("bench")
    token = httpx.post(args.base_url + TOKEN_PATH, data=form).json()["access_token"]
    result = asyncio.run(_baseline(args.base_url, token, args.rows, args.in_flight))
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


# -- harness child -------------------------------------------------------------------------


async def _harness(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    import redis
    import redis.asyncio

    from sandbox.testing import sandbox_partner
    from workers.flow import FlowPolicy, RowTask, process_row
    from workers.partner.client import PartnerClient
    from workers.partner.token import TokenBroker
    from workers.ratelimit import AsyncRateLimiter
    from workers.state import AsyncBatchStore

    settings = sandbox_partner(args.base_url, scope="bench", max_connections=args.in_flight)
    sync = redis.Redis.from_url(REDIS_URL)
    broker = TokenBroker(sync, settings, key_prefix=f"{prefix}:token")
    aredis = redis.asyncio.Redis.from_url(REDIS_URL)
    store = AsyncBatchStore(aredis, ttl_seconds=3600, prefix=prefix)
    limiter = AsyncRateLimiter(
        aredis, rate=args.rate, max_in_flight=args.in_flight, prefix=prefix
    )
    policy = FlowPolicy()
    batch = "bench"
    tasks = [RowTask(batch, n, "4", i, b) for n, i, b in rows(args.rows)]
    chunks = [
        tasks[i : i + args.rows_per_chunk] for i in range(0, len(tasks), args.rows_per_chunk)
    ]
    outcomes: dict[str, int] = {}
    queue: asyncio.Queue[list[RowTask]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)

    async with PartnerClient(settings, broker) as client:

        async def run_chunk(chunk: list[RowTask]) -> None:
            known = await store.precheck_many(
                batch, [(t.row_number, t.id_type, t.id_number) for t in chunk]
            )
            results = await asyncio.gather(
                *(
                    process_row(t, client, store, limiter, policy=policy, known=k)
                    for t, k in zip(chunk, known, strict=True)
                )
            )
            for r in results:
                outcomes[r.outcome.value] = outcomes.get(r.outcome.value, 0) + 1

        async def task_thread() -> None:
            while not queue.empty():
                await run_chunk(queue.get_nowait())

        await broker.aget()  # the first grant is not part of the rate
        started, cpu = time.perf_counter(), cpu_seconds()
        await asyncio.gather(*(task_thread() for _ in range(args.chunks_at_once)))
        elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu

    state_bytes = 0
    for key in sync.scan_iter(match=f"{prefix}:*", count=1000):
        if b":token" in key or b":ratelimit" in key or b":pause" in key:
            continue
        state_bytes += int(sync.memory_usage(key, samples=0) or 0)
    await aredis.aclose()
    broker.close()
    sync.close()
    return {
        "elapsed": elapsed, "cpu": cpu, "outcomes": outcomes, "grants": broker.grants,
        "reservations": limiter.reservations, "state_bytes_per_row": state_bytes / args.rows,
    }  # fmt: skip


def harness_child(args: argparse.Namespace) -> None:
    """Run process_row over the rows against ``--base-url``; print a JSON line of figures."""
    import redis

    from pipeline.core.logs import configure_logging

    if args.uvloop:
        import uvloop

        uvloop.install()
    # A worker logs JSON at INFO; the lines go to stderr, which the parent discards.
    configure_logging("INFO", json=True)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        if args.profile:
            from pyinstrument import Profiler

            with Profiler(async_mode="disabled") as profiler:
                result = asyncio.run(_harness(args, prefix))
            Path(args.profile).write_text(profiler.output_text(unicode=True, show_all=False))
        else:
            result = asyncio.run(_harness(args, prefix))
    finally:
        cleanup = redis.Redis.from_url(REDIS_URL)
        keys = list(cleanup.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            cleanup.delete(*keys)
        cleanup.close()
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


# -- full pipeline: onboard submit + onboard worker processes ------------------------------


def _vm_hwm_mb(pid: int) -> float:
    """Peak RSS of a live process from /proc (VmHWM, KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    """User + system CPU of a live process (all its threads) from /proc, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def knobs(args: argparse.Namespace) -> dict[str, Any]:
    """The worker tuning this run changes (empty: the code's own defaults)."""
    chosen: dict[str, Any] = {}
    if args.switch_interval:
        chosen["switch_interval"] = args.switch_interval
    if args.asyncio_loop:
        chosen["loop"] = "asyncio"
    if args.compression:
        chosen["compression"] = args.compression
    if args.serializer:
        chosen["serializer"] = args.serializer
    return chosen


def onboard(argv: list[str], chosen: dict[str, Any]) -> list[str]:
    """The command line of ``onboard *argv``, with the tuning ``chosen`` applied first."""
    if not chosen:
        return [ONBOARD, *argv]
    return [sys.executable, "-c", ONBOARD_WITH_KNOBS, json.dumps(chosen), *argv]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def make_csv(rows_wanted: int, path: Path) -> None:
    """A synthetic customers file with only valid rows (bench/make_customers.py)."""
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "make_customers.py"), "--rows", str(rows_wanted),
         "--invalid-rate", "0", "--out", str(path)],
        check=True, stdout=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip


def pipeline_env(base_url: str, tag: str, args: argparse.Namespace) -> dict[str, str]:
    """Settings of a bench batch: its own key prefix and queue on the bench's Redis database."""
    from sandbox.testing import partner_env

    return os.environ | partner_env(base_url, scope="bench") | {
        "ONBOARD_REDIS_URL": PIPELINE_REDIS_URL,
        "ONBOARD_PARTNER__MAX_CONNECTIONS": str(args.in_flight // args.workers),
        "ONBOARD_PIPELINE__KEY_PREFIX": tag,
        "ONBOARD_PIPELINE__QUEUE": tag,
        "ONBOARD_PIPELINE__RATE_LIMIT_PER_SECOND": str(args.rate),
        # The total in flight is the same as the baseline's, split over the processes.
        "ONBOARD_PIPELINE__MAX_IN_FLIGHT": str(args.in_flight // args.workers),
        "ONBOARD_PIPELINE__ROWS_PER_MESSAGE": str(args.rows_per_chunk),
    }  # fmt: skip


def _cleanup(tag: str) -> None:
    import redis

    r = redis.Redis.from_url(PIPELINE_REDIS_URL)
    keys = list(r.scan_iter(match=f"{tag}:*", count=1000))
    keys += [tag.encode(), f"_kombu.binding.{tag}".encode(),
             f"_kombu.binding_permanent.{tag}".encode()]
    r.delete(*keys)
    r.close()


def submit(
    csv: Path, env: dict[str, str], chosen: dict[str, Any] | None = None
) -> tuple[str, float, float]:
    """``onboard submit`` as a user runs it: (batch id, seconds, peak RSS MB of that child)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(onboard(["submit", str(csv)], chosen or {}), env=env,
                                 stdout=out, stderr=err, cwd=ROOT)  # fmt: skip
        # wait4 gives this one child's own peak RSS (ru_maxrss, KiB).
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"onboard submit failed ({child.returncode}): {err.read().decode()}")
        return out.read().decode().strip().splitlines()[-1], elapsed, usage.ru_maxrss / 1024


def run_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """Submit a generated file, then let ``--workers`` worker processes work it off."""
    import redis

    from sandbox.testing import run_sandbox
    from workers.state import BatchStore

    tag = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="onboard-bench-") as tmp, run_sandbox(
        latency_ms=args.latency_ms
    ) as sandbox:
        csv = Path(tmp) / "customers.csv"
        make_csv(args.rows, csv)
        env = pipeline_env(sandbox.base_url, tag, args)
        r = redis.Redis.from_url(PIPELINE_REDIS_URL)
        store = BatchStore(r, prefix=tag)
        workers: list[subprocess.Popen[bytes]] = []
        try:
            chosen = knobs(args)
            batch, submit_s, _ = submit(csv, env, chosen)
            queued = store.get_meta(batch)
            valid = queued.rows_enqueued if queued else args.rows
            queue_bytes = int(r.memory_usage(tag, samples=0) or 0)
            started = time.perf_counter()
            command = onboard(["worker", "--concurrency", str(args.chunks_at_once)], chosen)
            for _ in range(args.workers):
                workers.append(subprocess.Popen(
                    command, env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                ))  # fmt: skip
            deadline = started + max(120.0, args.rows / 20)
            first = 0.0
            first_done, first_cpu = 0, 0.0
            while not store.is_complete(batch):
                if not first and (first_done := store.done_count(batch)):
                    first = time.perf_counter()
                    first_cpu = sum(_cpu_s(w.pid) for w in workers)
                if time.perf_counter() > deadline:
                    raise SystemExit(f"batch not complete after {deadline - started:.0f} s")
                if any(w.poll() is not None for w in workers):
                    raise SystemExit("a worker exited early")
                time.sleep(0.05)  # polling a condition with a deadline
            elapsed = time.perf_counter() - started
            rss = [_vm_hwm_mb(w.pid) for w in workers]
            cpu = sum(_cpu_s(w.pid) for w in workers)
            counts = {o.value: n for o, n in store.counts(batch).items() if n}
            calls = store.calls(batch)
            stats = sandbox.stats()
        finally:
            for w in workers:
                _stop(w)
            _cleanup(tag)
            r.close()
    return {
        "elapsed": elapsed, "rows_per_s": valid / elapsed, "submit_s": submit_s,
        # From the first outcome on: the worker's start-up (Celery boot) left out.
        "steady_rows_per_s": valid / (started + elapsed - first) if first else 0.0,
        "cpu_us_per_row": cpu / valid * 1e6,
        # Steady CPU: from the first outcome on (Celery's start-up left out).
        "steady_cpu_us_per_row": (cpu - first_cpu) / max(valid - first_done, 1) * 1e6,
        "outcomes": counts, "grants": calls.get("token", 0), "worker_rss_mb": rss,
        "queue_bytes_per_row": queue_bytes / max(valid, 1), "creates": stats["creates"],
        "duplicate_creates": stats["duplicate_creates"], "sandbox_grants": stats["grants"],
        "peak_concurrency": stats["peak_concurrency"],
    }  # fmt: skip


# -- parent --------------------------------------------------------------------------------


def run_side(role: str, args: argparse.Namespace) -> dict[str, Any]:
    """Start a fresh sandbox, run one side in a child process, return its figures."""
    from sandbox.testing import run_sandbox

    with run_sandbox(latency_ms=args.latency_ms) as sandbox:
        command = [
            sys.executable, __file__, "--role", role, "--base-url", sandbox.base_url,
            "--rows", str(args.rows), "--in-flight", str(args.in_flight),
            "--rows-per-chunk", str(args.rows_per_chunk),
            "--chunks-at-once", str(args.chunks_at_once), "--rate", str(args.rate),
        ]  # fmt: skip
        if args.uvloop:
            command.append("--uvloop")
        if args.profile:
            command += ["--profile", args.profile]
        done = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False, cwd=ROOT
        )
        if done.returncode != 0:
            raise SystemExit(f"{role} child failed with exit code {done.returncode}")
        result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        stats = sandbox.stats()
    result["sandbox"] = {
        "creates": stats["creates"], "duplicate_creates": stats["duplicate_creates"],
        "grants": stats["grants"], "peak_concurrency": stats["peak_concurrency"],
        "peak_rps": stats["peak_rps"],
    }  # fmt: skip
    result["rows_per_s"] = args.rows / result["elapsed"]
    result["cpu_us_per_row"] = result["cpu"] / args.rows * 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rows-per-chunk", type=int, default=100)
    parser.add_argument("--chunks-at-once", type=int, default=4)
    parser.add_argument("--rate", type=float, default=100_000.0, help="global limiter, req/s")
    parser.add_argument("--uvloop", action="store_true", help="harness loop on uvloop")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (pipeline)")
    parser.add_argument(
        "--switch-interval", type=float, default=0.0,
        help="workers' GIL switch interval, seconds (default: workers.runtime's; "
        "0.005 is Python's own)",
    )
    parser.add_argument(
        "--asyncio-loop", action="store_true", help="workers' loop on asyncio, not uvloop"
    )
    parser.add_argument(
        "--compression", help="messages compressed with this kombu method ('none': plain)"
    )
    parser.add_argument("--serializer", help="messages written with this kombu serializer")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-harness", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument(
        "--submit-rows", type=int, default=0,
        help="only time `onboard submit` of a generated file of this many rows (e.g. 1000000)",
    )
    parser.add_argument("--profile", help="pyinstrument text profile of the harness to FILE")
    parser.add_argument("--role", choices=["baseline", "harness"], help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "baseline":
        baseline_child(args)
        return
    if args.role == "harness":
        harness_child(args)
        return

    if args.submit_rows:
        submit_figure(args.submit_rows, knobs(args))
        return
    limit = args.in_flight / (args.latency_ms / 1000) / 2
    print(
        f"{args.rows:,} rows, {args.in_flight} in flight, {args.latency_ms:.0f} ms latency, "
        f"load avg {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"worker tuning {knobs(args) or 'as shipped'}"
    )
    print(f"theoretical limit  {limit:,.0f} rows/s ({limit * 2:,.0f} req/s, 2 calls per row)")
    base = None if args.skip_baseline else run_side("baseline", args)
    if base is not None:
        print(
            f"aiohttp baseline   {base['rows_per_s']:,.0f} rows/s "
            f"({base['rows_per_s'] / limit:.0%} of the limit), {base['cpu_us_per_row']:.0f} us "
            f"CPU/row, peak RSS {base['peak_rss_mb']:.0f} MB, creates "
            f"{base['sandbox']['creates']:,}"
        )
    if not args.skip_harness:
        ours = run_side("harness", args)
        print(
            f"process_row        {ours['rows_per_s']:,.0f} rows/s "
            f"({ours['rows_per_s'] / limit:.0%} of the limit), {ours['cpu_us_per_row']:.0f} us "
            f"CPU/row, peak RSS {ours['peak_rss_mb']:.0f} MB"
        )
        print(
            f"  outcomes {ours['outcomes']}, creates {ours['sandbox']['creates']:,} "
            f"(duplicates {ours['sandbox']['duplicate_creates']}), token grants "
            f"{ours['grants']}, limiter round trips {ours['reservations']:,}, peak in flight "
            f"{ours['sandbox']['peak_concurrency']}, Redis batch state "
            f"{ours['state_bytes_per_row']:.0f} bytes/row"
        )
        if base is not None:
            print(f"  ratio            {ours['rows_per_s'] / base['rows_per_s']:.2f} (≥ 0.8)")
    if not args.skip_pipeline:
        full = run_pipeline(args)
        print(
            f"pipeline           {full['rows_per_s']:,.0f} rows/s "
            f"({full['rows_per_s'] / limit:.0%} of the limit), {args.workers} worker "
            f"process(es) × {args.chunks_at_once} threads, worker peak RSS "
            + ", ".join(f"{m:.0f}" for m in full["worker_rss_mb"]) + " MB"
        )
        print(f"  {full['steady_rows_per_s']:,.0f} rows/s from the first outcome on "
              "(worker start-up left out)")
        print(f"  worker CPU {full['cpu_us_per_row']:.0f} us/row "
              f"({full['steady_cpu_us_per_row']:.0f} us/row from the first outcome on)")
        print(
            f"  outcomes {full['outcomes']}, creates {full['creates']:,} (duplicates "
            f"{full['duplicate_creates']}), token grants {full['grants']} (sandbox "
            f"{full['sandbox_grants']}), peak in flight {full['peak_concurrency']}, submit "
            f"{full['submit_s']:.1f} s, Redis {full['queue_bytes_per_row']:,.0f} bytes per "
            "queued row"
        )
        if base is not None:
            print(f"  ratio            {full['rows_per_s'] / base['rows_per_s']:.2f} (≥ 0.8)")


def submit_figure(n: int, chosen: dict[str, Any]) -> None:
    """Time ``onboard submit`` (validate + enqueue) of ``n`` generated rows; no workers run."""
    import redis

    tag = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="onboard-bench-") as tmp:
        csv = Path(tmp) / "customers.csv"
        make_csv(n, csv)
        size = csv.stat().st_size
        env = pipeline_env("http://127.0.0.1:9", tag, argparse.Namespace(
            in_flight=100, workers=1, rate=50.0, rows_per_chunk=100))  # fmt: skip
        try:
            batch, seconds, peak = submit(csv, env, chosen)
            r = redis.Redis.from_url(PIPELINE_REDIS_URL)
            queue_bytes = int(r.memory_usage(tag, samples=0) or 0)
            messages = int(r.llen(tag))
            r.close()
        finally:
            _cleanup(tag)
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}, load avg {os.getloadavg()[0]:.1f}, "
          f"message tuning {chosen or 'as shipped'}")
    print(f"onboard submit of {n:,} rows: {seconds:.1f} s ({n / seconds:,.0f} rows/s), "
          f"peak RSS {peak:.0f} MB (targets: ≤ 60 s, ≤ 500 MB); batch {batch}")
    print(f"  queue: {messages:,} messages, {queue_bytes / 1e6:,.0f} MB in Redis "
          f"({queue_bytes / n:,.0f} bytes per queued row), file {size / 1e6:.0f} MB")

if __name__ == "__main__":
    main()
