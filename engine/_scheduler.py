"""The batching scheduler: one bounded queue per (kind, parameter set).

A queue dispatches a batch when it holds ``batch_max`` requests, when its
oldest request has waited ``batch_wait`` seconds, or at once when none of its
batches is running (so a lone request pays no batching delay). While a batch
runs, newcomers accumulate and leave together: batches grow with load and
shrink to one when the engine is quiet.

Every request carries its own sink (a ``Future`` for threads, an
``engine._bridge.Ticket`` for an event loop), so each caller gets its own
lane's result whatever order batches finish in. A request whose caller gave
up before dispatch is dropped from its batch; one abandoned while its batch
runs is computed and its result discarded, and nobody else's result is
affected.

The scheduler runs on threads, not on an event loop: the heavy work happens
in C (OpenSSL, the kernels) with the GIL released, and callers may be
synchronous (the CLI, benchmarks) or asynchronous (the service).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from engine._stats import Statistics
from engine.errors import EngineClosed, PqcError, QueueFull
from engine.ops import OpKey

logger = logging.getLogger(__name__)

Executor = Callable[[OpKey, Sequence[tuple]], list[object]]


class Sink(Protocol):
    """Where one lane's result goes."""

    def start(self) -> bool:
        """Called as the lane's batch forms; False drops the lane (caller left)."""

    def finish(self, result: object) -> None:
        """The lane's result, or the exception it failed with."""


class FutureSink:
    """A sink that fills a ``concurrent.futures.Future``, for blocking callers."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: Future = Future()

    def start(self) -> bool:
        return self.future.set_running_or_notify_cancel()

    def finish(self, result: object) -> None:
        if isinstance(result, BaseException):
            self.future.set_exception(result)
        else:
            self.future.set_result(result)


class _Request:
    __slots__ = ("enqueued", "lane", "sink")

    def __init__(self, lane: tuple, sink: Sink, now: float) -> None:
        self.lane = lane
        self.sink = sink
        self.enqueued = now


class _Queue:
    __slots__ = ("inflight", "items", "key")

    def __init__(self, key: OpKey) -> None:
        self.key = key
        self.items: deque[_Request] = deque()
        self.inflight = 0


class Scheduler:
    """Groups submitted lanes into batches and hands them to ``execute``."""

    def __init__(
        self,
        execute: Executor,
        *,
        batch_max: int = 64,
        batch_wait: float = 0.002,
        queue_max: int = 4096,
        max_inflight: int = 2,
        workers: int = 8,
        stats: Statistics | None = None,
    ) -> None:
        if batch_max < 1 or queue_max < 1 or max_inflight < 1 or batch_wait < 0:
            raise ValueError("Batch and queue limits must be positive.")
        self._execute = execute
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self.queue_max = queue_max
        self.max_inflight = max_inflight
        self.stats = stats or Statistics()
        self._queues: dict[OpKey, _Queue] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="pqc-batch")
        self._thread = threading.Thread(
            target=self._dispatch_loop, name="pqc-dispatch", daemon=True
        )
        self._thread.start()

    def submit(self, key: OpKey, lane: tuple) -> Future:
        """Queue one lane; return the future that will hold its result."""
        sink = FutureSink()
        self.submit_to(key, lane, sink)
        return sink.future

    def submit_to(self, key: OpKey, lane: tuple, sink: Sink) -> None:
        """Queue one lane whose result goes to ``sink``."""
        with self._cond:
            if self._closed:
                raise EngineClosed("The engine is closed; no new work is accepted.")
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(key)
            if len(queue.items) >= self.queue_max:
                self.stats.record_rejection(key)
                raise QueueFull(
                    f"The queue for {key} is full ({self.queue_max} waiting); "
                    "retry shortly.",
                    retry_after=1.0,
                )
            queue.items.append(_Request(lane, sink, time.monotonic()))
            if self._wakes_dispatcher(queue):
                self._cond.notify()

    def _wakes_dispatcher(self, queue: _Queue) -> bool:
        """Whether the lane just queued changes what the dispatcher waits for.

        Only a first lane (a new deadline, or an idle queue to run at once)
        or a full batch does; otherwise the dispatcher already sleeps until
        this queue's deadline or a batch's completion, and waking it per lane
        would cost a thread switch for nothing.
        """
        if queue.inflight >= self.max_inflight:
            return False
        return len(queue.items) == 1 or len(queue.items) >= self.batch_max

    def has_room(self, which: Callable[[OpKey], bool]) -> bool:
        """Whether every existing queue that ``which`` selects is below its bound."""
        with self._cond:
            return all(
                len(q.items) < self.queue_max
                for k, q in self._queues.items()
                if which(k)
            )

    def depth(self) -> dict[str, int]:
        """Requests waiting per queue, for statistics."""
        with self._cond:
            return {str(k): len(q.items) for k, q in self._queues.items()}

    def close(self) -> None:
        """Refuse new work, fail what is queued, and stop the threads."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            waiting = [r for q in self._queues.values() for r in q.items]
            for q in self._queues.values():
                q.items.clear()
            self._cond.notify_all()
        for request in waiting:
            if request.sink.start():
                request.sink.finish(EngineClosed("The engine was closed."))
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True)

    def _dispatch_loop(self) -> None:
        with self._cond:
            while not self._closed:
                timeout = self._dispatch_ready(time.monotonic())
                self._cond.wait(timeout)

    def _dispatch_ready(self, now: float) -> float | None:
        """Launch every batch that is due; return how long until the next."""
        soonest: float | None = None
        for queue in self._queues.values():
            while queue.items and self._due(queue, now):
                self._launch(queue, now)
            if queue.items and queue.inflight < self.max_inflight:
                left = queue.items[0].enqueued + self.batch_wait - now
                soonest = left if soonest is None else min(soonest, left)
        return None if soonest is None else max(soonest, 0.0)

    def _due(self, queue: _Queue, now: float) -> bool:
        if queue.inflight >= self.max_inflight:
            return False
        if queue.inflight == 0 or len(queue.items) >= self.batch_max:
            return True
        return now - queue.items[0].enqueued >= self.batch_wait

    def _launch(self, queue: _Queue, now: float) -> None:
        batch: list[_Request] = []
        while queue.items and len(batch) < self.batch_max:
            request = queue.items.popleft()
            # False means the caller gave up while waiting: drop the lane.
            if request.sink.start():
                batch.append(request)
            else:
                self.stats.record_cancel(queue.key)
        if not batch:
            return
        queue.inflight += 1
        self.stats.record_batch(queue.key, [now - r.enqueued for r in batch])
        logger.debug("Dispatching %d lanes of %s.", len(batch), queue.key)
        self._pool.submit(self._run, queue, batch)

    def _run(self, queue: _Queue, batch: list[_Request]) -> None:
        try:
            results = self._execute(queue.key, [r.lane for r in batch])
            if len(results) != len(batch):
                raise PqcError(
                    f"A backend returned {len(results)} results for {len(batch)} lanes."
                )
        except BaseException as exc:  # every lane must hear of the failure
            logger.error("A batch of %s failed: %s", queue.key, exc)
            results = [exc] * len(batch)
        finally:
            with self._cond:
                queue.inflight -= 1
                self._cond.notify()
        _deliver(batch, results)


def _deliver(batch: list[_Request], results: Sequence[object]) -> None:
    for request, result in zip(batch, results, strict=True):
        request.sink.finish(result)
