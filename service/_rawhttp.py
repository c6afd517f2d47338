"""A minimal HTTP/1.1 keep-alive client for the load generator.

httpx costs more CPU per request than the server spends on a handshake, so
on a small machine a load test through it measures the client. This client
speaks just what the load test needs (JSON bodies with Content-Length,
keep-alive, one request at a time per connection) over asyncio streams.
It is not a general HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit


class RawHTTPError(Exception):
    """The connection broke or the server's answer was not understood."""


class RawConnection:
    """One keep-alive connection to ``base_url``; reconnects after a failure."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("The raw client speaks plain http:// only.")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: Any = None
    ) -> tuple[int, dict[str, str], Any]:
        """Send one request; return (status, headers, decoded JSON or None)."""
        try:
            # asyncio.timeout, not wait_for: wait_for wraps each request in a
            # task of its own, a cost a load generator pays per request.
            async with asyncio.timeout(self.timeout):
                return await self._exchange(method, path, body)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,  # a head over the reader's 64 KiB limit
            TimeoutError,
            ValueError,
            IndexError,  # a status line without a status
            RecursionError,  # a body nested deeper than the JSON parser goes
        ) as exc:
            await self.close()
            raise RawHTTPError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, method: str, path: str, body: Any) -> tuple:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port
            )
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        self._writer.write(head.encode() + payload)
        await self._writer.drain()
        return await self._read_response()

    async def _read_response(self) -> tuple[int, dict[str, str], Any]:
        assert self._reader is not None
        # The whole head in one read: one await instead of one per line.
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        raw = await self._reader.readexactly(length) if length else b""
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, json.loads(raw) if raw else None

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
