"""A real ``pqc-engine serve`` process for integration tests, and HTTP helpers.

``ServerProcess`` runs ``python -m service.cli serve`` on a free 127.0.0.1
port with an environment of the test's choosing (always a private key
directory), waits until ``/api/pqc/health`` answers, and keeps the server's
stdout and stderr in a file so tests can read what it logged.

``ResponseLog`` is attached to every httpx client the tests use (an event
hook), so a fixture can check at teardown that no response anywhere was a
500. The request builders at the end craft session calls by hand, tampered
or not, from a client ``Session``.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from service import protocol as pr
from service.client import Session

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_POLL_INTERVAL = 0.1
_BIND_ATTEMPTS = 3


def free_port() -> int:
    """A loopback port that is free right now (a later bind may still race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any PQC_* setting, plus ``extra``.

    Settings the developer happens to export must not leak into a test
    server; stdout is unbuffered so the log file is current while it runs.
    The access log is on, so that ``internal_errors`` sees every 500.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PQC_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PQC_ACCESS_LOG"] = "true"
    env.update(extra or {})
    return env


class ServerProcess:
    """One ``pqc-engine serve`` subprocess on 127.0.0.1.

    ``env`` holds extra ``PQC_*`` (or other) variables; ``key_dir`` defaults
    to a fresh temporary folder; ``args`` are extra ``serve`` flags.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        key_dir: str | os.PathLike[str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="pqc-server-"))
        self.key_dir = Path(key_dir) if key_dir else self._dir / "keys"
        self.log_path = self._dir / "server.log"
        self.env = server_env({"PQC_KEY_DIR": str(self.key_dir), **(env or {})})
        self.args = list(args)
        self.port = 0
        self.stopped_by_sigterm = False
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> ServerProcess:
        """Start the server and wait until its health route answers.

        A port taken between ``free_port`` and the bind is retried on a new
        one; any other early exit, or no answer in time, raises.
        """
        try:
            for _ in range(_BIND_ATTEMPTS):
                self.launch()
                if self.wait_ready():
                    return self
                if "address already in use" not in self.log_text().lower():
                    break
        except BaseException:
            self.stop()
            raise
        self.stop()
        raise RuntimeError(f"The server did not start: {self.log_text()[-3000:]}")

    def launch(self) -> None:
        """Start the process on a new free port without waiting for it."""
        self.port = free_port()
        command = [sys.executable, "-m", "service.cli", "serve"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), *self.args]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> bool:
        """Poll health until it answers (any status); False if the process died."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as http:
            while time.monotonic() < deadline:
                if not self.running:
                    return False
                try:
                    http.get("/api/pqc/health")
                    return True
                except httpx.TransportError:
                    time.sleep(_POLL_INTERVAL)
        raise RuntimeError(f"The server did not answer within {timeout} seconds.")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a bound; return the exit status."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
                self.stopped_by_sigterm = True
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        return proc.returncode

    def cleanup(self) -> None:
        """Stop the server and remove its folder (log and default key dir)."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def internal_errors(self) -> list[str]:
        """Access-log lines of 500 answers, and any logged traceback."""
        return [
            line
            for line in self.log_text().splitlines()
            if '" 500 ' in line or line.startswith("Traceback")
        ]

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ServerGroup:
    """Servers of one test, stopped together; start-ups may overlap."""

    def __init__(self) -> None:
        self.servers: list[ServerProcess] = []

    def start(
        self, env: Mapping[str, str] | None = None, **options: Any
    ) -> ServerProcess:
        return self.start_many([env or {}], **options)[0]

    def start_many(
        self, envs: Sequence[Mapping[str, str]], **options: Any
    ) -> list[ServerProcess]:
        """One server per environment, all with ``options``, launched at once."""
        servers = [ServerProcess(env, **options) for env in envs]
        self.servers += servers
        for server in servers:
            server.launch()
        for server in servers:
            if not server.wait_ready():
                server.stop()
                server.start()
        return servers

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()

    def cleanup(self) -> None:
        for server in self.servers:
            server.cleanup()


# -- every response, checked for 500s ------------------------------------


@dataclass
class ResponseLog:
    """Statuses of every response seen by the clients it is attached to."""

    seen: list[tuple[str, str, int]] = field(default_factory=list)
    _clients: list[httpx.Client] = field(default_factory=list)

    def record(self, response: httpx.Response) -> None:
        request = response.request
        self.seen.append((request.method, str(request.url), response.status_code))

    async def arecord(self, response: httpx.Response) -> None:
        self.record(response)

    def client(self, base_url: str, **options: Any) -> httpx.Client:
        """A sync client that reports here; closed by the fixture's teardown."""
        options.setdefault("timeout", 10.0)
        http = httpx.Client(
            base_url=base_url, event_hooks={"response": [self.record]}, **options
        )
        self._clients.append(http)
        return http

    def async_client(self, base_url: str, **options: Any) -> httpx.AsyncClient:
        """An async client that reports here; the test closes it."""
        options.setdefault("timeout", 10.0)
        return httpx.AsyncClient(
            base_url=base_url, event_hooks={"response": [self.arecord]}, **options
        )

    def server_errors(self) -> list[tuple[str, str, int]]:
        return [entry for entry in self.seen if entry[2] >= 500 and entry[2] != 503]

    def close(self) -> None:
        for http in self._clients:
            http.close()


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    """The response is protocol.md's error body, exactly; return its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    return message


# -- session calls built by hand (protocol.md section 4) ------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def proof(
    session: Session,
    label: str,
    *,
    timestamp: int | None = None,
    nonce: bytes | None = None,
) -> tuple[int, bytes, bytes]:
    """(timestamp, nonce, mac) for ``label``; fresh unless given."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = os.urandom(pr.NONCE_BYTES) if nonce is None else nonce
    suite = pr.SUITES[session.suite]
    mac = pr.session_mac(
        suite, session.auth_key, label, session.session_id, timestamp, nonce
    )
    return timestamp, nonce, mac


def verify_body(session: Session, **options: Any) -> dict[str, Any]:
    timestamp, nonce, mac = proof(session, "session-verify", **options)
    return {
        "session_id": session.session_id,
        "timestamp": timestamp,
        "nonce": b64(nonce),
        "mac": b64(mac),
    }


def delete_headers(session: Session, **options: Any) -> dict[str, str]:
    timestamp, nonce, mac = proof(session, "session-delete", **options)
    return {
        "X-PQC-Timestamp": str(timestamp),
        "X-PQC-Nonce": b64(nonce),
        "X-PQC-MAC": b64(mac),
    }


def flip_bit(data: bytes, index: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def flip_b64(value: str, index: int = 0) -> str:
    """The base64 of ``value``'s bytes with one bit flipped."""
    return b64(flip_bit(base64.b64decode(value), index))
