"""A real, throwaway redis-server for tests, on 127.0.0.1 only.

The server persists nothing (no RDB, no AOF) and keeps its files in a private
temporary folder. Tests may stop it, start it again on the same port (a
restart), or freeze it with SIGSTOP to play a hung server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

_DEFAULT_BINARY = "/usr/bin/redis-server"
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


def find_redis_server() -> str | None:
    """Return the redis-server binary to use, or None when there is none."""
    if os.access(_DEFAULT_BINARY, os.X_OK):
        return _DEFAULT_BINARY
    return shutil.which("redis-server")


def _free_port() -> int:
    """Ask the kernel for a loopback port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server process bound to 127.0.0.1 on a port fixed for life."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="pqc-redis-"))
        self._proc: subprocess.Popen | None = None
        self._paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers."""
        if self.running:
            return
        self._proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_ready()

    def stop(self) -> None:
        """Kill the server at once, as a crash would, and reap it."""
        proc, self._proc = self._proc, None
        self._paused = False
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait(timeout=_STOP_TIMEOUT)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it accepts connections but never answers."""
        if not self.running:
            raise RuntimeError("The redis-server is not running.")
        self._proc.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        if self._paused and self.running:
            self._proc.send_signal(signal.SIGCONT)
        self._paused = False

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def client(self) -> redis.Redis:
        """A plain synchronous client, for checks behind a store's back."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=5, socket_connect_timeout=5
        )

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--protected-mode", "yes",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._dir),
            "--logfile", str(self._dir / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        probe = redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1
        )
        try:
            while not self._answers(probe):
                if self._proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {self._log_tail()}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"redis-server did not answer PING within {_START_TIMEOUT} "
                        f"seconds: {self._log_tail()}"
                    )
                time.sleep(0.02)
        finally:
            probe.close()

    @staticmethod
    def _answers(probe: redis.Redis) -> bool:
        try:
            return bool(probe.ping())
        except (redis.RedisError, OSError):
            return False

    def _log_tail(self) -> str:
        try:
            return (self._dir / "redis.log").read_text()[-2000:]
        except OSError:
            return "(no log)"
