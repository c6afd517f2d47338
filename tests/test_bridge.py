"""engine._bridge.Inbox: batch results into an event loop, a burst at a time."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import pytest

from engine._bridge import Inbox


class CountingInbox(Inbox):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.drains = 0

    def _drain(self) -> None:
        self.drains += 1
        super()._drain()


async def test_results_and_errors_arrive_from_another_thread() -> None:
    inbox = Inbox(asyncio.get_running_loop())
    futures = [Future() for _ in range(3)]
    waiting = [asyncio.create_task(inbox.wait(f)) for f in futures]
    await asyncio.sleep(0)

    def finish() -> None:
        futures[0].set_result(b"one")
        futures[1].set_exception(ValueError("lane two failed"))
        futures[2].set_result(3)

    thread = threading.Thread(target=finish)
    thread.start()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    thread.join()

    assert results[0] == b"one" and results[2] == 3
    assert isinstance(results[1], ValueError) and str(results[1]) == "lane two failed"


async def test_a_burst_of_results_costs_one_callback() -> None:
    inbox = CountingInbox(asyncio.get_running_loop())
    futures = [Future() for _ in range(64)]
    waiting = [asyncio.create_task(inbox.wait(f)) for f in futures]
    await asyncio.sleep(0)

    for n, future in enumerate(futures):  # one batch finishing, loop busy
        future.set_result(n)
    results = await asyncio.gather(*waiting)

    assert results == list(range(64))
    assert inbox.drains == 1


async def test_cancelling_the_task_cancels_the_lane() -> None:
    inbox = Inbox(asyncio.get_running_loop())
    future: Future = Future()
    task = asyncio.create_task(inbox.wait(future))
    await asyncio.sleep(0)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert future.cancelled()


async def test_a_lane_cancelled_by_the_engine_cancels_its_waiter() -> None:
    inbox = Inbox(asyncio.get_running_loop())
    future: Future = Future()
    task = asyncio.create_task(inbox.wait(future))
    await asyncio.sleep(0)

    future.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
