"""Shared set-up for the benchmarks: lanes are built outside timed regions."""

from __future__ import annotations

import pytest

from engine.backends.openssl import OpenSSLBackend
from engine.lanes import make_lanes

# make_lanes lives in engine.lanes, shared with ``pqc-engine bench``.
__all__ = ["backend_cache", "backends", "make_lanes"]


def backends() -> dict[str, object]:
    """Every backend that can be built on this host, by name."""
    found: dict[str, object] = {"openssl": OpenSSLBackend}
    return found


@pytest.fixture(scope="session")
def backend_cache():
    made: dict[str, object] = {}
    yield made
    for backend in made.values():
        backend.close()
