"""Results crossing from the batch threads to an asyncio event loop.

``asyncio.wrap_future`` wakes the loop once per lane: a batch of 64 lanes
means 64 cross-thread wake-ups and 64 callbacks, all paid by the one thread
that also serves every request. An ``Inbox`` collects the lanes that finish
while a wake-up is pending and hands them over in one callback, so a batch
costs the loop about one wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future


class Inbox:
    """Delivers finished ``Future`` results into ``loop``'s own futures."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._ready: list[tuple[Future, asyncio.Future]] = []

    async def wait(self, future: Future) -> object:
        """The result of ``future``, awaited on this inbox's loop.

        Cancelling the awaiting task cancels ``future`` too, so a lane still
        queued is dropped rather than run (as with ``asyncio.wrap_future``).
        """
        waiter = self.loop.create_future()
        future.add_done_callback(lambda done: self._arrive(done, waiter))
        try:
            return await waiter
        except asyncio.CancelledError:
            future.cancel()
            raise

    def _arrive(self, done: Future, waiter: asyncio.Future) -> None:
        """Called in the thread that finished ``done``."""
        with self._lock:
            self._ready.append((done, waiter))
            first = len(self._ready) == 1
        if first:
            # RuntimeError: the loop is closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
        for done, waiter in ready:
            if waiter.done():
                continue  # its task was cancelled meanwhile
            if done.cancelled():
                waiter.cancel()
            elif (exc := done.exception()) is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(done.result())
