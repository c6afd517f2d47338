"""Shared set-up for the benchmarks: lanes are built outside timed regions."""

from __future__ import annotations

import pytest

from engine.backends.openssl import OpenSSLBackend
from engine.errors import BackendUnavailable
from engine.lanes import make_lanes

# make_lanes lives in engine.lanes, shared with ``pqc-engine bench``.
__all__ = ["backend_cache", "backends", "make_lanes"]


def backends() -> dict[str, object]:
    """Every backend that can be built on this host, by name."""
    found: dict[str, object] = {"openssl": OpenSSLBackend}
    try:
        from engine.backends.device import DeviceBackend
        from engine.config import EngineConfig

        DeviceBackend(EngineConfig()).close()
    except (ImportError, BackendUnavailable):
        return found
    found["device"] = lambda: DeviceBackend(EngineConfig())
    return found


@pytest.fixture(scope="session")
def backend_cache():
    made: dict[str, object] = {}
    yield made
    for backend in made.values():
        backend.close()
