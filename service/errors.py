"""Errors raised by the HTTP front end's own parts (session store, key store).

They share the engine's root, ``engine.errors.PqcError``, so the HTTP edge maps
every failure through one table.
"""

from __future__ import annotations

from engine.errors import PqcError


class StoreUnavailable(PqcError):
    """The session store cannot be reached; handshakes cannot be served."""

    retryable = True
