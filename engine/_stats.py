"""Counters behind ``Engine.statistics()``: cheap to update, copied on read."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict, deque
from collections.abc import Iterable

from engine.ops import OpKey

# Batch-size histogram buckets: a size falls in the first bucket >= it.
BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_WAIT_SAMPLES = 4096


class Statistics:
    """Thread-safe operation, batch, wait, fallback and rejection counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: Counter[str] = Counter()
        self._batches: Counter[str] = Counter()
        self._by_backend: Counter[str] = Counter()
        self._sizes: Counter[int] = Counter()
        self._rejections: Counter[str] = Counter()
        self._cancels: Counter[str] = Counter()
        self._fallbacks: Counter[str] = Counter()
        self._errors: defaultdict[str, int] = defaultdict(int)
        self._waits: deque[float] = deque(maxlen=_WAIT_SAMPLES)
        self._wait_sum = 0.0
        self._wait_max = 0.0

    def record_batch(self, key: OpKey, waits: Iterable[float]) -> None:
        waits = list(waits)
        with self._lock:
            self._ops[str(key)] += len(waits)
            self._batches[str(key)] += 1
            self._sizes[_bucket(len(waits))] += 1
            self._waits.extend(waits)
            self._wait_sum += sum(waits)
            self._wait_max = max(self._wait_max, *waits)

    def record_backend(self, backend: str, lanes: int) -> None:
        with self._lock:
            self._by_backend[backend] += lanes

    def record_rejection(self, key: OpKey) -> None:
        with self._lock:
            self._rejections[str(key)] += 1

    def record_cancel(self, key: OpKey) -> None:
        with self._lock:
            self._cancels[str(key)] += 1

    def record_fallback(self, key: OpKey, reason: str) -> None:
        with self._lock:
            self._fallbacks[str(key)] += 1
            self._errors[reason] += 1

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready copy of every counter."""
        with self._lock:
            ops = sum(self._ops.values())
            batches = sum(self._batches.values())
            waits = sorted(self._waits)
            return {
                "operations": ops,
                "batches": batches,
                "mean_batch_size": round(ops / batches, 3) if batches else 0.0,
                "operations_by_kind": dict(self._ops),
                "batches_by_kind": dict(self._batches),
                "operations_by_backend": dict(self._by_backend),
                "batch_size_histogram": {
                    f"<={b}": self._sizes[b] for b in BUCKETS if self._sizes[b]
                },
                "queue_wait_ms": {
                    "mean": round(1e3 * self._wait_sum / ops, 3) if ops else 0.0,
                    "p50": _percentile_ms(waits, 0.50),
                    "p99": _percentile_ms(waits, 0.99),
                    "max": round(1e3 * self._wait_max, 3),
                },
                "fallbacks": sum(self._fallbacks.values()),
                "fallbacks_by_kind": dict(self._fallbacks),
                "fallback_reasons": dict(self._errors),
                "rejections": sum(self._rejections.values()),
                "rejections_by_kind": dict(self._rejections),
                "cancelled": sum(self._cancels.values()),
            }


def _bucket(size: int) -> int:
    for bound in BUCKETS:
        if size <= bound:
            return bound
    return BUCKETS[-1]


def _percentile_ms(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, int(q * len(ordered)))
    return round(1e3 * ordered[index], 3)
