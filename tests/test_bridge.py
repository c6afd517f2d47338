"""engine._bridge: lane results into an event loop, a burst at a time."""

from __future__ import annotations

import asyncio
import threading

import pytest

from engine._bridge import Inbox
from engine.errors import PqcError


class CountingInbox(Inbox):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.drains = 0

    def _drain(self) -> None:
        self.drains += 1
        super()._drain()


async def test_results_and_errors_arrive_from_another_thread() -> None:
    inbox = Inbox(asyncio.get_running_loop())
    tickets = [inbox.ticket() for _ in range(3)]
    waiting = [asyncio.create_task(inbox.wait(t)) for t in tickets]
    await asyncio.sleep(0)

    def finish() -> None:
        assert all(t.start() for t in tickets)
        tickets[0].finish(b"one")
        tickets[1].finish(ValueError("lane two failed"))
        tickets[2].finish(3)

    thread = threading.Thread(target=finish)
    thread.start()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    thread.join()

    assert results[0] == b"one" and results[2] == 3
    assert isinstance(results[1], ValueError) and str(results[1]) == "lane two failed"


async def test_a_burst_of_results_costs_one_callback() -> None:
    inbox = CountingInbox(asyncio.get_running_loop())
    tickets = [inbox.ticket() for _ in range(64)]
    waiting = [asyncio.create_task(inbox.wait(t)) for t in tickets]
    await asyncio.sleep(0)

    for n, ticket in enumerate(tickets):  # one batch finishing, loop busy
        ticket.finish(n)
    results = await asyncio.gather(*waiting)

    assert results == list(range(64))
    assert inbox.drains == 1


async def test_cancelling_the_task_abandons_the_lane() -> None:
    inbox = Inbox(asyncio.get_running_loop())
    ticket = inbox.ticket()
    task = asyncio.create_task(inbox.wait(ticket))
    await asyncio.sleep(0)
    assert ticket.start()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert not ticket.start()


async def test_a_result_for_a_cancelled_waiter_is_dropped() -> None:
    inbox = CountingInbox(asyncio.get_running_loop())
    ticket = inbox.ticket()
    task = asyncio.create_task(inbox.wait(ticket))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    ticket.finish(b"computed anyway")
    await asyncio.sleep(0)

    assert inbox.drains == 1
    assert ticket.waiter.cancelled()


async def test_a_result_asyncio_refuses_fails_only_its_own_lane() -> None:
    inbox = Inbox(asyncio.get_running_loop())
    tickets = [inbox.ticket() for _ in range(3)]
    waiting = [asyncio.create_task(inbox.wait(t)) for t in tickets]
    await asyncio.sleep(0)

    tickets[0].finish(b"first")
    tickets[1].finish(StopIteration())  # a future cannot carry this one
    tickets[2].finish(b"third")
    results = await asyncio.gather(*waiting, return_exceptions=True)

    assert results[0] == b"first" and results[2] == b"third"
    assert isinstance(results[1], PqcError) and "StopIteration" in str(results[1])


def test_results_for_a_closed_loop_are_dropped() -> None:
    loop = asyncio.new_event_loop()
    inbox = Inbox(loop)
    ticket = inbox.ticket()
    loop.close()

    ticket.finish(b"a shared secret nobody will read")

    assert inbox._ready == []
