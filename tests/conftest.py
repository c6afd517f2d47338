"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_server import RedisServer, find_redis_server
from tests.server import ResponseLog, ServerGroup, ServerProcess


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


# -- HTTP service integration (tests/server.py) ---------------------------


def _check_server_log(server: ServerProcess) -> None:
    """No 500s and no tracebacks; a stopped server shut down in order."""
    errors = server.internal_errors()
    assert not errors, f"The server answered 500 or logged a traceback: {errors}"
    if server.stopped_by_sigterm:
        assert "Application shutdown complete" in server.log_text()


@pytest.fixture
def response_log() -> Iterator[ResponseLog]:
    """Records every response of the test's clients; no 500 may be among them."""
    log = ResponseLog()
    yield log
    log.close()
    assert not log.server_errors(), f"Responses with status 500: {log.server_errors()}"


@pytest.fixture(scope="module")
def default_server() -> Iterator[ServerProcess]:
    """One server per test module with default settings (memory store)."""
    with ServerProcess() as server:
        yield server
    try:
        _check_server_log(server)
    finally:
        server.cleanup()


@pytest.fixture
def serve() -> Iterator[ServerGroup]:
    """Servers of the test's own; stopped at teardown, none may answer a 500."""
    group = ServerGroup()
    yield group
    group.stop_all()
    try:
        for server in group.servers:
            _check_server_log(server)
    finally:
        group.cleanup()
