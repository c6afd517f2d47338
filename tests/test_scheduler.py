"""The batching scheduler, driven through a fake ``execute`` callable.

The fake records every batch it is handed and holds it until the test lets
it go, so batch composition and completion order are set by the test, not
by thread timing. Waits below are hang guards only: a correct scheduler
meets each of them in microseconds.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future

import pytest

from engine._scheduler import Scheduler
from engine.errors import EngineClosed, PqcError, QueueFull
from engine.ops import Kind, OpKey

pytestmark = pytest.mark.timeout(30)

HANG = 10.0  # seconds before a wait is declared a hang
LONG_WAIT = 600.0  # a batch_wait no test outlives: a dispatch here was not a wait
SHORT_WAIT = 0.05

KEY = OpKey(Kind.KEM_ENCAPS, "ML-KEM-768")
OTHER = OpKey(Kind.SIG_VERIFY, "ML-DSA-65")
THIRD = OpKey(Kind.KEM_DECAPS, "ML-KEM-1024")


def answer(key: OpKey, lane: tuple) -> object:
    """The fake's per-lane result: derived from the key and the lane's input.

    A lane whose number is 3 modulo 5 is refused, the way a backend refuses
    a malformed input: its result is an exception for that lane alone.
    """
    (number,) = lane
    if number % 5 == 3:
        return ValueError(f"lane {number} of {key} refused")
    return f"{key}:{number}"


def outcome(future: Future) -> object:
    """A finished future's result, or its exception as a value."""
    return future.exception(HANG) or future.result(HANG)


def same(got: object, want: object) -> bool:
    if isinstance(want, Exception):
        return type(got) is type(want) and str(got) == str(want)
    return got == want


class Recorder:
    """A fake ``execute``: records each batch and holds it until released."""

    def __init__(
        self,
        results: Callable[[OpKey, Sequence[tuple]], list[object]] | None = None,
        broken: frozenset[int] = frozenset(),
    ) -> None:
        self._results = results or (lambda key, lanes: [answer(key, x) for x in lanes])
        self._broken = broken
        self._cond = threading.Condition()
        self._gates: list[threading.Event] = []
        self._released_all = False
        self.batches: list[tuple[OpKey, list[tuple]]] = []

    def __call__(self, key: OpKey, lanes: Sequence[tuple]) -> list[object]:
        gate = threading.Event()
        with self._cond:
            self.batches.append((key, list(lanes)))
            self._gates.append(gate)
            if self._released_all:
                gate.set()
            self._cond.notify_all()
        if not gate.wait(HANG):
            raise RuntimeError("The test never released this batch.")

        if any(lane[0] in self._broken for lane in lanes):
            raise RuntimeError(f"The device faulted on the batch led by {lanes[0]}.")
        return self._results(key, lanes)

    def wait_batches(self, count: int) -> list[tuple[OpKey, list[tuple]]]:
        """Block until ``count`` batches have reached the executor."""
        with self._cond:
            arrived = self._cond.wait_for(lambda: len(self.batches) >= count, HANG)
            assert arrived, f"{len(self.batches)} batches arrived, not {count}."
            return list(self.batches)

    def release(self, index: int) -> None:
        with self._cond:
            self._gates[index].set()

    def release_all(self) -> None:
        with self._cond:
            self._released_all = True
            for gate in self._gates:
                gate.set()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def start(recorder: Recorder) -> Iterator[Callable[..., Scheduler]]:
    """Build schedulers; at teardown let held batches go and close them all."""
    started: list[tuple[Scheduler, object]] = []

    def start(execute: Callable | None = None, **limits: object) -> Scheduler:
        execute = execute or recorder
        scheduler = Scheduler(execute, **limits)
        started.append((scheduler, execute))
        return scheduler

    yield start
    for scheduler, execute in started:
        if isinstance(execute, Recorder):
            execute.release_all()
        scheduler.close()


def plug(scheduler: Scheduler, recorder: Recorder, key: OpKey = KEY) -> Future:
    """Put one lane in flight and hold it, so the queue is busy."""
    before = len(recorder.batches)
    future = scheduler.submit(key, (10_000 + before,))
    recorder.wait_batches(before + 1)
    return future


# -- when a batch leaves ---------------------------------------------------


def test_full_batch_leaves_without_waiting(recorder, start):
    scheduler = start(batch_max=4, batch_wait=LONG_WAIT, max_inflight=2)
    first = plug(scheduler, recorder)

    lanes = [(n,) for n in (1, 2, 4, 6)]
    futures = [scheduler.submit(KEY, lane) for lane in lanes]
    batches = recorder.wait_batches(2)

    assert batches[1] == (KEY, lanes)
    assert not first.done()
    recorder.release_all()
    assert [f.result(HANG) for f in futures] == [answer(KEY, x) for x in lanes]
    assert first.result(HANG) == answer(KEY, (10_000,))
    snapshot = scheduler.stats.snapshot()
    assert snapshot["batch_size_histogram"] == {"<=1": 1, "<=4": 1}
    assert snapshot["operations"] == 5


@pytest.mark.parametrize("count", [2, 4], ids=["partial", "full"])
def test_one_inflight_holds_the_next_batch_until_the_first_ends(recorder, start, count):
    scheduler = start(batch_max=4, batch_wait=SHORT_WAIT, max_inflight=1)
    first = plug(scheduler, recorder)
    lanes = [(n,) for n in range(1, count + 1)]
    futures = [scheduler.submit(KEY, lane) for lane in lanes]

    # Several batch_wait periods pass; with one batch allowed in flight, the
    # queue must keep every lane. (Only absence is checked: no bound on time.)
    time.sleep(5 * SHORT_WAIT)
    assert len(recorder.batches) == 1
    assert scheduler.depth() == {str(KEY): count}

    recorder.release(0)
    assert first.result(HANG) == answer(KEY, (10_000,))
    assert recorder.wait_batches(2)[1] == (KEY, lanes)
    recorder.release_all()
    for future, lane in zip(futures, lanes, strict=True):
        assert same(outcome(future), answer(KEY, lane)), lane


def test_partial_batch_leaves_once_the_oldest_has_waited(recorder, start):
    scheduler = start(batch_max=4, batch_wait=SHORT_WAIT, max_inflight=2)
    first = plug(scheduler, recorder)
    lanes = [(1,), (2,)]
    futures = [scheduler.submit(KEY, lane) for lane in lanes]

    key, dispatched = recorder.wait_batches(2)[1]

    assert key == KEY and dispatched[0] == (1,)
    assert not first.done()
    # Recorded wait = dispatch time - enqueue time, by the same clock the
    # scheduler decided with: at least batch_wait for a wait-triggered batch.
    waited = scheduler.stats.snapshot()["queue_wait_ms"]["max"]
    assert waited >= SHORT_WAIT * 1e3
    recorder.release_all()
    assert [f.result(HANG) for f in futures] == [answer(KEY, x) for x in lanes]


def test_lone_request_leaves_at_once(recorder, start):
    scheduler = start(batch_wait=LONG_WAIT)
    recorder.release_all()

    assert scheduler.submit(KEY, (7,)).result(HANG) == answer(KEY, (7,))
    assert scheduler.submit(KEY, (9,)).result(HANG) == answer(KEY, (9,))
    assert recorder.batches == [(KEY, [(7,)]), (KEY, [(9,)])]


def test_queues_are_independent_per_operation(recorder, start):
    scheduler = start(batch_max=4, batch_wait=LONG_WAIT, max_inflight=1)
    plug(scheduler, recorder, KEY)

    # KEY is busy, yet OTHER's lone lane is idle-dispatched at once.
    future = scheduler.submit(OTHER, (5,))
    assert recorder.wait_batches(2)[1] == (OTHER, [(5,)])
    recorder.release(1)
    assert future.result(HANG) == answer(OTHER, (5,))


# -- back-pressure -----------------------------------------------------------


def test_full_queue_refuses_with_queue_full(recorder, start):
    scheduler = start(batch_max=8, batch_wait=LONG_WAIT, queue_max=2, max_inflight=1)
    first = plug(scheduler, recorder)
    queued = [scheduler.submit(KEY, (n,)) for n in (1, 2)]

    with pytest.raises(QueueFull) as caught:
        scheduler.submit(KEY, (4,))

    error = caught.value
    assert isinstance(error, PqcError)
    assert error.retryable is True
    assert error.retry_after == 1.0
    assert str(error) == (
        "The queue for kem_encaps/ML-KEM-768 is full (2 waiting); retry shortly."
    )
    snapshot = scheduler.stats.snapshot()
    assert snapshot["rejections"] == 1
    assert snapshot["rejections_by_kind"] == {str(KEY): 1}
    assert scheduler.depth() == {str(KEY): 2}

    other = scheduler.submit(OTHER, (9,))  # another queue has its own bound
    recorder.release_all()
    assert [f.result(HANG) for f in (first, *queued, other)] == [
        answer(KEY, (10_000,)),
        answer(KEY, (1,)),
        answer(KEY, (2,)),
        answer(OTHER, (9,)),
    ]
    assert scheduler.stats.snapshot()["operations"] == 4


@pytest.mark.parametrize(
    "limits",
    [{"batch_max": 0}, {"queue_max": 0}, {"max_inflight": 0}, {"batch_wait": -1}],
    ids=["batch_max", "queue_max", "max_inflight", "batch_wait"],
)
def test_limits_out_of_range_are_refused(limits):
    with pytest.raises(ValueError, match="must be positive"):
        Scheduler(lambda key, lanes: [], **limits)


# -- every caller gets its own result ----------------------------------------


def test_each_caller_gets_its_own_result_in_shuffled_completion_order(recorder, start):
    keys, per_key, batch_max = (KEY, OTHER, THIRD), 4, 8
    scheduler = start(
        batch_max=batch_max,
        batch_wait=LONG_WAIT,
        max_inflight=per_key + 1,
        workers=len(keys) * (per_key + 1),
    )
    futures: dict[tuple[OpKey, tuple], Future] = {}
    for key in keys:
        futures[key, (10_000 + len(futures),)] = plug(scheduler, recorder, key)
    for index, key in enumerate(keys):
        for n in range(per_key * batch_max):
            lane = (1000 * index + n,)
            futures[key, lane] = scheduler.submit(key, lane)

    # Every batch is full, so all of them are in flight at once.
    batches = recorder.wait_batches(len(keys) * (per_key + 1))
    assert sorted(len(lanes) for _, lanes in batches) == [1] * 3 + [8] * 12
    finished: list[tuple[OpKey, tuple]] = []
    noted = threading.Condition()

    def note(name: tuple[OpKey, tuple]) -> None:
        with noted:
            finished.append(name)
            noted.notify_all()

    for name, future in futures.items():
        future.add_done_callback(lambda _, name=name: note(name))

    # Release one batch at a time, in a shuffled order, and let it finish
    # before the next: the completion order is exactly the shuffle.
    order = list(range(len(batches)))
    random.Random(20240917).shuffle(order)
    for index in order:
        expected = len(finished) + len(batches[index][1])
        recorder.release(index)
        with noted:
            assert noted.wait_for(lambda n=expected: len(finished) == n, HANG)

    assert finished == [(batches[i][0], x) for i in order for x in batches[i][1]]
    assert finished != list(futures)
    for (key, lane), future in futures.items():
        assert same(outcome(future), answer(key, lane)), (key, lane)


def test_batch_failure_reaches_every_lane_of_that_batch_only(start):
    recorder = Recorder(broken=frozenset({2}))
    scheduler = start(recorder, batch_max=3, batch_wait=LONG_WAIT, max_inflight=3)
    first = plug(scheduler, recorder)
    faulty = [scheduler.submit(KEY, (n,)) for n in (1, 2, 4)]
    healthy = [scheduler.submit(KEY, (n,)) for n in (5, 6, 7)]
    batches = recorder.wait_batches(3)
    assert [lanes for _, lanes in batches[1:]] == [
        [(1,), (2,), (4,)],
        [(5,), (6,), (7,)],
    ]

    recorder.release_all()

    errors = [f.exception(HANG) for f in faulty]
    assert all(error is errors[0] for error in errors)
    assert str(errors[0]) == "The device faulted on the batch led by (1,)."
    assert [f.result(HANG) for f in healthy] == [answer(KEY, (n,)) for n in (5, 6, 7)]
    assert first.result(HANG) == answer(KEY, (10_000,))


def test_wrong_result_count_fails_the_whole_batch(start):
    recorder = Recorder(results=lambda key, lanes: [answer(key, lanes[0])])
    scheduler = start(recorder, batch_max=2, batch_wait=LONG_WAIT, max_inflight=2)
    first = plug(scheduler, recorder)
    futures = [scheduler.submit(KEY, (n,)) for n in (1, 2)]
    recorder.wait_batches(2)

    recorder.release_all()

    assert first.result(HANG) == answer(KEY, (10_000,))
    for future in futures:
        error = future.exception(HANG)
        assert type(error) is PqcError
        assert str(error) == "A backend returned 1 results for 2 lanes."


# -- cancellation --------------------------------------------------------------


def test_cancelled_before_dispatch_is_dropped_from_its_batch(recorder, start):
    scheduler = start(batch_max=8, batch_wait=LONG_WAIT, max_inflight=1)
    first = plug(scheduler, recorder)
    futures = [scheduler.submit(KEY, (n,)) for n in (1, 2, 4)]

    assert futures[1].cancel()
    recorder.release(0)

    assert recorder.wait_batches(2)[1] == (KEY, [(1,), (4,)])
    recorder.release_all()
    assert first.result(HANG) == answer(KEY, (10_000,))
    assert [futures[0].result(HANG), futures[2].result(HANG)] == [
        answer(KEY, (1,)),
        answer(KEY, (4,)),
    ]
    assert futures[1].cancelled()
    snapshot = scheduler.stats.snapshot()
    assert snapshot["cancelled"] == 1
    assert snapshot["operations"] == 3


async def test_task_cancelled_while_its_batch_runs(recorder, start):
    scheduler = start(batch_max=4, batch_wait=LONG_WAIT, max_inflight=2)
    await asyncio.to_thread(plug, scheduler, recorder)
    inner: dict[int, Future] = {}

    async def call(n: int) -> object:
        inner[n] = scheduler.submit(KEY, (n,))
        return await asyncio.wrap_future(inner[n])

    tasks = [asyncio.create_task(call(n)) for n in (1, 2, 4, 6)]
    batches = await asyncio.to_thread(recorder.wait_batches, 2)
    assert batches[1] == (KEY, [(1,), (2,), (4,), (6,)])

    tasks[1].cancel()
    recorder.release_all()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert isinstance(results[1], asyncio.CancelledError)
    assert [results[i] for i in (0, 2, 3)] == [answer(KEY, (n,)) for n in (1, 4, 6)]
    # The lane was computed with its batch; only its caller stopped listening.
    assert inner[2].result(HANG) == answer(KEY, (2,))


# -- closing -------------------------------------------------------------------


def test_close_fails_queued_work_and_refuses_new_work(recorder, start):
    scheduler = start(batch_max=8, batch_wait=LONG_WAIT, max_inflight=1)
    first = plug(scheduler, recorder)
    queued = [scheduler.submit(KEY, (n,)) for n in (1, 2)]
    closer = threading.Thread(target=scheduler.close)
    closer.start()

    for future in queued:
        error = future.exception(HANG)
        assert isinstance(error, EngineClosed)
        assert error.retryable is False
        assert str(error) == "The engine was closed."
    with pytest.raises(EngineClosed, match="no new work is accepted"):
        scheduler.submit(KEY, (3,))

    # close() waits for the batch already running, which still succeeds.
    recorder.release_all()
    closer.join(HANG)
    assert not closer.is_alive()
    assert first.result(HANG) == answer(KEY, (10_000,))
    assert len(recorder.batches) == 1
    scheduler.close()  # a second close is harmless
