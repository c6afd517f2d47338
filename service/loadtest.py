"""``pqc-engine loadtest``: concurrent whole handshakes against a server.

N clients each loop over complete handshakes for T seconds: keys pinned
once, then hello and key-exchange, checked to the end as the SDK's
``handshake()`` does (protocol.md sections 2 and 3), and with ``verify``
also one session call (``POST /api/pqc/session/verify``, section 4) on each
new session. They run the client SDK's handshake state machine
(``ClientHandshake``) over lean keep-alive connections. The report
gives handshakes per second, latency percentiles, errors by code, and the
mean batch size the server's engine formed during the run (from
``GET /api/pqc/stats`` before and after; that route answers for the worker
process that takes the call, so with several workers the server figures
are one worker's, or mixed).
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import httpx

from service._rawhttp import RawConnection, RawHTTPError
from service.client import (
    ClientError,
    ClientHandshake,
    HandshakeError,
    client_error,
    pins_from_document,
    verify_request,
)
from service.protocol import DEFAULT_SUITE


@dataclass
class LoadReport:
    url: str
    concurrency: int
    duration_s: float
    suites: list[str]
    processes: int = 1
    verify: bool = False
    handshakes: int = 0
    handshakes_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    server_batches: int = 0
    server_operations: int = 0
    server_mean_batch_size: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        lat = self.latency_ms
        lines = [
            f"url            {self.url}",
            f"concurrency    {self.concurrency} ({self.processes} client processes)",
            "per handshake  hello, key-exchange"
            + (", session verify" if self.verify else ""),
            f"duration       {self.duration_s:.1f} s",
            f"handshakes     {self.handshakes}",
            f"rate           {self.handshakes_per_s:.1f} handshakes/s",
            f"latency        p50 {lat.get('p50', 0.0):.1f} ms  "
            f"p95 {lat.get('p95', 0.0):.1f} ms  p99 {lat.get('p99', 0.0):.1f} ms",
            (
                f"server batches {self.server_batches} "
                f"(mean size {self.server_mean_batch_size:.2f})"
                if self.server_operations
                else "server batches unknown (no statistics from the server)"
            ),
            "errors         "
            + (
                ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"
            ),
        ]
        return "\n".join(lines)


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Client:
    """One simulated client: the SDK's handshake logic over one connection.

    It runs ``ClientHandshake`` (the SDK's protocol state machine, with key
    pinning) over a lean keep-alive connection, so that the client side
    spends its CPU on the protocol rather than on the HTTP library.
    """

    def __init__(self, url: str, pins: dict, suites: list[str], verify: bool) -> None:
        self._conn = RawConnection(url)
        self._pins = pins
        self._suites = suites
        self._verify = verify

    async def handshake(self) -> None:
        state = ClientHandshake(self._suites, self._pins)
        hello = await self._call("/api/pqc/handshake/hello", state.hello_request())
        request = state.key_exchange_request(hello)
        answer = await self._call("/api/pqc/handshake/key-exchange", request)
        session = state.finish(answer)
        if self._verify:
            await self._call("/api/pqc/session/verify", verify_request(session))

    async def _call(self, path: str, body: dict) -> dict:
        status, _, answer = await self._conn.request("POST", path, body)
        if status >= 400:
            raise client_error(answer, status)
        return answer

    async def close(self) -> None:
        await self._conn.close()


async def _worker(
    client: _Client, deadline: float, latencies: list[float], errors: Counter[str]
) -> None:
    try:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                await client.handshake()
            except ClientError as exc:
                errors[exc.code] += 1
                await asyncio.sleep(0.01)
                continue
            except HandshakeError:
                errors["client_check_failed"] += 1
                continue
            except RawHTTPError:
                errors["connection_error"] += 1
                await asyncio.sleep(0.01)
                continue
            latencies.append(time.perf_counter() - start)
    finally:
        await client.close()


async def _load(
    url: str,
    concurrency: int,
    duration: float,
    suites: list[str] | None,
    verify: bool,
) -> tuple[list[float], Counter[str]]:
    """One process's share: ``concurrency`` clients for ``duration`` seconds."""
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
        pins = pins_from_document((await http.get("/api/pqc/keys")).json())
    chosen = list(suites or [DEFAULT_SUITE])
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    deadline = time.monotonic() + duration
    clients = [_Client(url, pins, chosen, verify) for _ in range(concurrency)]
    await asyncio.gather(*(_worker(c, deadline, latencies, errors) for c in clients))
    return latencies, errors


def _load_in_process(args: tuple) -> tuple[list[float], Counter[str]]:
    with asyncio.Runner(loop_factory=_fast_loop()) as runner:
        return runner.run(_load(*args))


def _fast_loop():
    """uvloop's loop where installed (it comes with uvicorn[standard]): it
    spends about half the CPU of asyncio's own per request, and the load
    generator shares the machine with the server it measures."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _stats(url: str) -> dict | None:
    """The server's engine statistics, or None when it cannot give them (a
    server gone mid-run must not cost the run's report)."""
    try:
        stats = httpx.get(url.rstrip("/") + "/api/pqc/stats", timeout=30.0).json()
    except (httpx.HTTPError, ValueError):
        return None
    ok = isinstance(stats, dict) and all(
        isinstance(stats.get(k), int) for k in ("batches", "operations")
    )
    return stats if ok else None


def run_load(
    url: str,
    concurrency: int,
    duration: float,
    suites: list[str] | None = None,
    processes: int = 1,
    verify: bool = False,
) -> LoadReport:
    """Run the load and return its report; the server must already be up.

    With ``processes`` > 1 the clients are spread over that many processes,
    so that the client side's Python does not cap what the server can show.
    With ``verify`` each handshake is followed by one session verify call.
    """
    if (
        concurrency < 1
        or not 0 < duration < math.inf
        or not 1 <= processes <= concurrency
    ):
        raise ValueError("Concurrency, duration and processes must be positive.")
    shares = [concurrency // processes] * processes
    for i in range(concurrency % processes):
        shares[i] += 1
    before = _stats(url)
    started = time.monotonic()
    if processes == 1:
        parts = [_load_in_process((url, concurrency, duration, suites, verify))]
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(processes) as pool:
            jobs = [(url, share, duration, suites, verify) for share in shares]
            parts = pool.map(_load_in_process, jobs)
    elapsed = time.monotonic() - started
    after = _stats(url)

    latencies = [x for part in parts for x in part[0]]
    errors: Counter[str] = sum((part[1] for part in parts), Counter())
    chosen = suites or [DEFAULT_SUITE]
    report = _report(
        url, concurrency, elapsed, chosen, latencies, errors, before, after
    )
    report.processes = processes
    report.verify = verify
    return report


def _report(url, concurrency, elapsed, suites, latencies, errors, before, after):
    ordered = sorted(latencies)
    batches = operations = 0
    if before is not None and after is not None:
        batches = after["batches"] - before["batches"]
        operations = after["operations"] - before["operations"]
    return LoadReport(
        url=url,
        concurrency=concurrency,
        duration_s=round(elapsed, 3),
        suites=list(suites),
        handshakes=len(ordered),
        handshakes_per_s=round(len(ordered) / elapsed, 2) if elapsed else 0.0,
        latency_ms={
            q: round(1e3 * percentile(ordered, v), 2)
            for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
        },
        errors=dict(errors),
        server_batches=batches,
        server_operations=operations,
        server_mean_batch_size=round(operations / batches, 3) if batches else 0.0,
    )


def main(args) -> int:
    report = run_load(
        args.url,
        args.concurrency,
        args.duration,
        args.suite,
        args.processes,
        args.verify,
    )
    print(report.render())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report.to_dict(), handle, indent=2)
    return 0 if report.handshakes and not report.errors else 1
