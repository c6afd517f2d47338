"""System benchmark: whole handshakes per second against one real server.

Starts ``pqc-engine serve`` on 127.0.0.1 (memory store, the given offload
mode) and runs ``service.loadtest.run_load`` at concurrency 64 for
``PQC_BENCH_SECONDS`` (default 10). The figures land in the benchmark's
extra info: handshakes per second, p50/p95/p99 latency and the mean batch
size the server's engine formed. It is one round by design: the number is
a throughput over the whole run, not a per-call time.
"""

from __future__ import annotations

import os

import pytest

from service.loadtest import run_load
from tests.server import ServerProcess

SECONDS = float(os.environ.get("PQC_BENCH_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("PQC_BENCH_CONCURRENCY", "64"))


@pytest.mark.parametrize("offload", ["off", "on"])
def test_handshakes_per_second(benchmark, offload: str) -> None:
    env = {"PQC_OFFLOAD": offload, "PQC_LOG_LEVEL": "warning"}
    with ServerProcess(env) as server:
        report = benchmark.pedantic(
            run_load,
            args=(server.url, CONCURRENCY, SECONDS),
            kwargs={"processes": 1},
            rounds=1,
            iterations=1,
        )
    print(f"\noffload {offload}\n" + report.render())

    assert report.handshakes > 0 and not report.errors
    benchmark.extra_info.update(
        handshakes_per_s=report.handshakes_per_s,
        latency_ms=report.latency_ms,
        mean_batch_size=report.server_mean_batch_size,
        concurrency=CONCURRENCY,
    )
