"""Results crossing from the batch threads to an asyncio event loop.

Waking the loop once per lane (as ``asyncio.wrap_future`` does) means a batch
of 64 lanes costs 64 cross-thread wake-ups and 64 callbacks, all paid by the
one thread that also serves every request. An ``Inbox`` collects the lanes
that finish while a wake-up is pending and hands them over in one callback,
so a batch costs the loop about one wake-up. Each lane travels on a
``Ticket``, the scheduler's sink for event-loop callers: lighter than a
``concurrent.futures.Future``, which takes a lock and a condition at every
step.
"""

from __future__ import annotations

import asyncio
import threading

from engine.errors import PqcError


class Ticket:
    """One lane's way back to its inbox's loop (a scheduler sink)."""

    __slots__ = ("abandoned", "inbox", "waiter")

    def __init__(self, inbox: Inbox, waiter: asyncio.Future) -> None:
        self.inbox = inbox
        self.waiter = waiter
        # Set on the loop's thread, read by the dispatcher: a plain flag is
        # enough, as a lane that slips through is computed and discarded.
        self.abandoned = False

    def start(self) -> bool:
        return not self.abandoned

    def finish(self, result: object) -> None:
        self.inbox._arrive(self.waiter, result)


class Inbox:
    """Delivers lanes' results into ``loop``'s own futures."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._ready: list[tuple[asyncio.Future, object]] = []

    def ticket(self) -> Ticket:
        """A new lane's ticket; call on the loop's thread."""
        return Ticket(self, self.loop.create_future())

    async def wait(self, ticket: Ticket) -> object:
        """The lane's result (or its exception), awaited on this inbox's loop.

        Cancelling the awaiting task abandons the lane, so one still queued
        is dropped rather than run.
        """
        try:
            return await ticket.waiter
        except asyncio.CancelledError:
            ticket.abandoned = True
            raise

    def _arrive(self, waiter: asyncio.Future, result: object) -> None:
        """Called in the thread that finished the lane."""
        with self._lock:
            self._ready.append((waiter, result))
            first = len(self._ready) == 1
        if first:
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:
                # The loop is closed, so nobody is waiting any more: drop
                # the results (they may hold shared secrets) now.
                with self._lock:
                    self._ready.clear()

    def _drain(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
        for waiter, result in ready:
            if not waiter.done():  # else its task was cancelled meanwhile
                _settle(waiter, result)


def _settle(waiter: asyncio.Future, result: object) -> None:
    """Hand one lane's result over; a result asyncio refuses fails that lane only."""
    if not isinstance(result, BaseException):
        waiter.set_result(result)
        return
    try:
        waiter.set_exception(result)
    except TypeError:
        # StopIteration and its kin cannot travel through a future.
        waiter.set_exception(PqcError(f"The lane failed with {type(result).__name__}."))
