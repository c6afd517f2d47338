"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_server import RedisServer, find_redis_server


def _redis_or_skip() -> RedisServer:
    binary = find_redis_server()
    if binary is None:
        pytest.skip(
            "redis-server is not installed (looked for /usr/bin/redis-server "
            "and on PATH); CI installs it."
        )
    return RedisServer(binary)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server shared by the whole run; tests must not stop it."""
    with _redis_or_skip() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, free to stop, restart or pause."""
    with _redis_or_skip() as server:
        yield server
