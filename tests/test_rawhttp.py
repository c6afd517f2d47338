"""service._rawhttp: the load generator's keep-alive client, against tiny
servers on 127.0.0.1 that answer with fixed bytes."""

from __future__ import annotations

import asyncio
import json

import pytest

from service._rawhttp import RawConnection, RawHTTPError

pytestmark = pytest.mark.timeout(30)


async def _serve(answer: bytes):
    """A server that reads one request head and body, then sends ``answer``."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                seen.append(head + await reader.readexactly(length))
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", seen


def _response(status: int, body: bytes, *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status} Whatever", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def test_requests_share_one_connection_and_read_headers() -> None:
    body = json.dumps({"ok": True}).encode()
    server, url, seen = await _serve(_response(201, body, "X-Thing:  spaced "))
    conn = RawConnection(url)

    for _ in range(3):
        status, headers, answer = await conn.request("POST", "/p", {"a": 1})
        assert (status, answer) == (201, {"ok": True})
        assert headers["x-thing"] == "spaced"

    assert len(seen) == 3
    assert seen[0].startswith(b"POST /p HTTP/1.1\r\n")
    assert seen[0].endswith(b'{"a": 1}')
    await conn.close()
    server.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1\r\n\r\n",  # no status
        b"HTTP/1.1 abc Bad\r\n\r\n",  # status not a number
        b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{"a"',  # cut short
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnot",  # not JSON
        _response(200, b"[" * 100_000),  # nested past the parser's depth
    ],
    ids=["no-status", "bad-status", "short-body", "not-json", "deep-json"],
)
async def test_a_garbled_answer_is_a_raw_http_error(answer: bytes) -> None:
    server, url, _ = await _serve(answer)
    conn = RawConnection(url, timeout=1)

    with pytest.raises(RawHTTPError):
        await conn.request("POST", "/p", {})

    await conn.close()
    server.close()
