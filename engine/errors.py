"""The engine's exceptions: one root, a few specific kinds.

Each class says whether retrying the same request can help (``retryable``),
so callers such as the HTTP edge can map them without inspecting messages.
Messages are full sentences and never contain key material.
"""

from __future__ import annotations


class PqcError(Exception):
    """Root of every error raised by pqc-engine."""

    retryable: bool = False


class UnsupportedParameterSet(PqcError):
    """No enabled backend serves this operation kind and parameter set."""


class BackendUnavailable(PqcError):
    """A backend is missing, failed its self-tests, or failed a batch."""

    retryable = True


class QueueFull(PqcError):
    """The engine's queue for this operation is full; retry after a pause."""

    retryable = True

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EngineClosed(PqcError):
    """The engine was closed before or while the operation ran."""


class InvalidInput(PqcError, ValueError):
    """An operation's input is malformed: a wrong length or an invalid key.

    It is also a ``ValueError`` so that ordinary Python callers can catch it
    the usual way. It never triggers a fallback: every backend would refuse
    the same input.
    """


class ConfigError(PqcError, ValueError):
    """A configuration value is missing or out of range."""
