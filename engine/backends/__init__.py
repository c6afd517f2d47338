"""Backends: each runs a whole batch of one operation kind in one call."""

from engine.backends.base import Backend, check_bytes

__all__ = ["Backend", "check_bytes"]
