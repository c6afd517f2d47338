"""The HTTP edge: the routes of protocol.md, errors and the body cap.

Only this module knows about HTTP. Every failure becomes protocol.md's JSON
error (``{"error": {"code", "message"}}``) through one table; anything
unforeseen becomes a 500 with a generic message and is logged, so a bug
never leaks key material into a response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from engine import Engine
from engine.errors import (
    BackendUnavailable,
    EngineClosed,
    InvalidInput,
    PqcError,
    QueueFull,
    UnsupportedParameterSet,
)
from service.config import Settings
from service.errors import StoreUnavailable
from service.handshake import HandshakeService
from service.keystore import KeyStore
from service.protocol import SUITES, ProtocolError
from service.sessions import SessionStore, open_store

logger = logging.getLogger(__name__)

STATUS = {
    "bad_request": 400,
    "no_common_suite": 400,
    "handshake_failed": 401,
    "bad_mac": 401,
    "stale_request": 401,
    "replayed_request": 401,
    "unknown_handshake": 404,
    "unknown_session": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_too_large": 413,
    "overloaded": 503,
    "unavailable": 503,
    "internal_error": 500,
}
HEALTH_TIMEOUT = 2.0  # seconds for the store's ping inside /health
ROTATION_CHECK_SECONDS = 60.0


def error_response(
    code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(_error_body(code, message), STATUS[code], headers)


def _error_body(code: str, message: str) -> dict:
    """protocol.md's error shape."""
    return {"error": {"code": code, "message": message}}


def _classify(exc: Exception) -> tuple[str, str, dict[str, str] | None]:
    """The one table from exceptions to protocol.md's (code, message, headers)."""
    if isinstance(exc, ProtocolError):
        return exc.code, str(exc), None
    if isinstance(exc, QueueFull):
        retry = str(max(1, round(exc.retry_after)))
        return "overloaded", str(exc), {"Retry-After": retry}
    if isinstance(exc, StoreUnavailable):
        # The store's own sentences say what is wrong and carry no secrets.
        return "unavailable", str(exc), {"Retry-After": "1"}
    if isinstance(exc, BackendUnavailable | EngineClosed):
        return "unavailable", "No crypto backend can serve this now.", None
    if isinstance(exc, InvalidInput):
        return "bad_request", str(exc), None
    if isinstance(exc, UnsupportedParameterSet):
        return "no_common_suite", str(exc), None
    logger.error("Unexpected %s while serving a request.", type(exc).__name__)
    return "internal_error", "The server failed unexpectedly.", None


def _from_exception(exc: Exception) -> JSONResponse:
    return error_response(*_classify(exc))


# The three POST routes of every handshake. The edge serves them itself:
# FastAPI's routing, dependency and serialisation layers cost more than the
# handshake's own Python, and this is the path a gateway runs thousands of
# times a second. Everything else goes through FastAPI.
HANDSHAKE_ROUTES: dict[str, Callable[[HandshakeService, dict], Awaitable[dict]]] = {
    "/api/pqc/handshake/hello": HandshakeService.hello,
    "/api/pqc/handshake/key-exchange": HandshakeService.key_exchange,
    "/api/pqc/session/verify": HandshakeService.verify_session,
}


class Edge:
    """The first layer of every HTTP request.

    It refuses request bodies over ``limit`` bytes before reading them
    whole: a declared Content-Length over the limit at once, a chunked body
    as soon as it passes the limit. Then it answers the handshake's own
    routes (``HANDSHAKE_ROUTES``) directly from the app's service and hands
    every other request, its body replayed whole, to ``app``.
    """

    def __init__(self, app: FastAPI, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = HANDSHAKE_ROUTES.get(scope["path"])
        if route is not None and scope["method"] != "POST":
            message = "That method is not allowed."
            await _send_error(send, "method_not_allowed", message, {"Allow": "POST"})
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(send)
            return
        body = await self._read(receive)
        if body is _DISCONNECTED:
            return  # the client left mid-body: nothing to answer, nothing to do
        if body is None:
            await self._refuse(send)
            return
        if route is None:
            await self.app(scope, _replay(body, receive), send)
            return
        await self._serve(route, body, send)

    async def _serve(self, route, body: bytes, send: Send) -> None:
        try:
            answer = await route(self.app.state.service, _parse_json(body))
        except Exception as exc:
            await _send_error(send, *_classify(exc))
            return
        await _send_json(send, 200, answer)

    async def _read(self, receive: Receive) -> bytes | object | None:
        """The whole body; None if over the limit; _DISCONNECTED if cut short."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _DISCONNECTED
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, send: Send) -> None:
        message = f"The request body is over the limit of {self.limit} bytes."
        await _send_error(send, "request_too_large", message, {"Connection": "close"})


async def _send_json(
    send: Send, status: int, content: object, headers: dict[str, str] | None = None
) -> None:
    """A JSON response, encoded exactly as Starlette's JSONResponse does."""
    body = json.dumps(
        content, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode("utf-8")
    raw = [
        (b"content-length", str(len(body)).encode("latin-1")),
        (b"content-type", b"application/json"),
    ]
    raw += [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in (headers or {}).items()
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_error(
    send: Send, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    await _send_json(send, STATUS[code], _error_body(code, message), headers)


_DISCONNECTED = object()


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _parse_json(raw: bytes) -> dict:
    try:
        # protocol.md: strings are UTF-8, so the body is decoded as UTF-8 only
        # (json.loads alone would also guess UTF-16 and UTF-32).
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nesting deeper than the parser's stack, well
        # within the body limit.
        raise ProtocolError("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ProtocolError("The request body must be a JSON object.")
    return body


def _build_state(settings: Settings) -> tuple[Engine, KeyStore, SessionStore]:
    engine = Engine(settings.engine).start()
    try:
        keys = KeyStore(settings.key_dir, rotation_days=settings.key_rotation_days)
        store = open_store(
            settings.session_redis,
            settings.session_redis_url,
            **(
                {"op_timeout": settings.session_redis_timeout_seconds}
                if settings.session_redis
                else {}
            ),
        )
    except BaseException:
        engine.close()
        raise
    return engine, keys, store


def create_app(settings: Settings | None = None) -> Edge:
    """The ASGI application; settings come from ``PQC_*`` when not given.

    It is the ``Edge`` in front of the FastAPI app (``.app``), outside
    every framework layer, so the handshake's routes pay for none of them.
    """
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine, keys, store = _build_state(settings)
        service = HandshakeService(settings, engine, keys, store)
        keys.ensure(service.signature_algorithms())
        keys.rotate_if_due()
        app.state.service = service
        rotation = asyncio.create_task(_rotation_loop(keys))
        logger.info(
            "pqc-engine serving %s on pid %d", service.served_suites(), os.getpid()
        )
        try:
            yield
        finally:
            rotation.cancel()
            await store.close()
            engine.close()

    app = FastAPI(
        title="pqc-engine",
        summary="Post-quantum handshakes (pqc-hs/1) over a batch crypto engine.",
        version="0.1.0",
        lifespan=lifespan,
    )
    _install_handlers(app)
    _install_routes(app)
    return Edge(app, limit=settings.max_body_bytes)


async def _rotation_loop(keys: KeyStore) -> None:
    while True:
        await asyncio.sleep(ROTATION_CHECK_SECONDS)
        try:
            keys.rotate_if_due()
        except PqcError as exc:
            logger.error("Key rotation check failed: %s", exc)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(PqcError)
    async def pqc_error(request: Request, exc: PqcError) -> JSONResponse:
        return _from_exception(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response("bad_request", "The request is malformed.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            return error_response("method_not_allowed", "That method is not allowed.")
        if exc.status_code == 404:
            return error_response("not_found", "There is no such endpoint.")
        return error_response("bad_request", "The request is malformed.")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _from_exception(exc)


def _install_routes(app: FastAPI) -> None:
    def svc(request: Request) -> HandshakeService:
        return request.app.state.service

    @app.get("/api/pqc/keys")
    async def keys(request: Request) -> dict:
        return svc(request).keys_document()

    @app.delete("/api/pqc/session/{session_id}", status_code=204)
    async def delete(request: Request, session_id: str) -> Response:
        headers = request.headers
        await svc(request).delete_session(
            session_id,
            headers.get("x-pqc-timestamp"),
            headers.get("x-pqc-nonce"),
            headers.get("x-pqc-mac"),
        )
        return Response(status_code=204)

    @app.get("/api/pqc/health")
    async def health(request: Request) -> JSONResponse:
        service = svc(request)
        service.refresh_keys()
        return await _health(service)

    @app.get("/api/pqc/stats")
    async def stats(request: Request) -> dict:
        return svc(request).engine.statistics()


async def _health(service: HandshakeService) -> JSONResponse:
    engine = service.engine.health()
    store_ok = True
    try:
        await asyncio.wait_for(service.store.ping(), HEALTH_TIMEOUT)
    except (StoreUnavailable, TimeoutError):
        store_ok = False
    status = engine["status"]
    if not store_ok:
        status = "down"
    body = {
        "status": status,
        "protocol": "pqc-hs/1",
        "crypto_backend": engine["active_backend"],
        "active_path": engine["active_path"],
        "device": engine["device"],
        "selftests_passed": engine["selftests_passed"],
        "backends": engine["backends"],
        "session_store": {
            "backend": service.store.backend_name,
            "reachable": store_ok,
        },
        "suites": service.served_suites(),
        "all_suites": list(SUITES),
    }
    return JSONResponse(body, status_code=503 if status == "down" else 200)
