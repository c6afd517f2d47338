"""Micro benchmarks: one batch on one backend, over a grid.

Grid: operation x parameter set x backend x batch size. The timed region is
one ``run_batch`` call; lanes (and the keys they need) are made beforehand.
Read ``ops`` in the extra info as operations per second for that batch
size: batch size / median time.
"""

from __future__ import annotations

import pytest

from benchmarks.conftest import backends, make_lanes
from engine.ops import Kind, OpKey

OPERATIONS = [
    (Kind.KEM_KEYGEN, "ML-KEM-768"),
    (Kind.KEM_ENCAPS, "ML-KEM-768"),
    (Kind.KEM_DECAPS, "ML-KEM-768"),
    (Kind.SIG_KEYGEN, "ML-DSA-65"),
    (Kind.SIG_SIGN, "ML-DSA-65"),
    (Kind.SIG_VERIFY, "ML-DSA-65"),
]
BATCHES = [1, 8, 64]


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"batch{b}")
@pytest.mark.parametrize("backend_name", sorted(backends()))
@pytest.mark.parametrize(
    "op", OPERATIONS, ids=[f"{k.value}-{p}" for k, p in OPERATIONS]
)
def test_batch(benchmark, backend_cache, op, backend_name, batch) -> None:
    kind, param = op
    backend = backend_cache.get(backend_name)
    if backend is None:
        backend = backend_cache[backend_name] = backends()[backend_name]()
    key = OpKey(kind, param)
    if not backend.serves(key):
        pytest.skip(f"{backend_name} does not serve {key}.")
    lanes = make_lanes(backend, key, batch)

    results = benchmark(backend.run_batch, key, lanes)

    assert len(results) == batch
    assert not any(isinstance(r, Exception) for r in results)
    benchmark.extra_info["batch"] = batch
    if benchmark.stats is not None:  # None under --benchmark-disable
        median = benchmark.stats.stats.median
        benchmark.extra_info["ops"] = round(batch / median, 1)
