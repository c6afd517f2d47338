"""The HTTP edge: FastAPI routes of protocol.md, errors and the body cap.

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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=STATUS[code], headers=headers)


def _from_exception(exc: Exception) -> JSONResponse:
    """The one table from exceptions to protocol.md's error codes."""
    if isinstance(exc, ProtocolError):
        return error_response(exc.code, str(exc))
    if isinstance(exc, QueueFull):
        retry = str(max(1, round(exc.retry_after)))
        return error_response("overloaded", str(exc), {"Retry-After": retry})
    if isinstance(exc, StoreUnavailable):
        # The store's own sentences say what is wrong and carry no secrets.
        return error_response("unavailable", str(exc), {"Retry-After": "1"})
    if isinstance(exc, BackendUnavailable | EngineClosed):
        return error_response("unavailable", "No crypto backend can serve this now.")
    if isinstance(exc, InvalidInput):
        return error_response("bad_request", str(exc))
    if isinstance(exc, UnsupportedParameterSet):
        return error_response("no_common_suite", str(exc))
    logger.error("Unexpected %s while serving a request.", type(exc).__name__)
    return error_response("internal_error", "The server failed unexpectedly.")


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes before reading them whole.

    A declared Content-Length over the limit is refused at once; a chunked
    body is read chunk by chunk and refused as soon as it passes the limit.
    An accepted body is replayed to the app, which never sees a partial one.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send)
            return
        body = await self._read(receive)
        if body is _DISCONNECTED:
            return  # the client left mid-body: nothing to answer, nothing to do
        if body is None:
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

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

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            "request_too_large",
            f"The request body is over the limit of {self.limit} bytes.",
            {"Connection": "close"},
        )
        await response(scope, receive, send)


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


async def _json_body(request: Request) -> dict:
    raw = await request.body()
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


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI application; settings come from ``PQC_*`` when not given."""
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
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app


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


Handler = Callable[[Request], Awaitable[object]]


def _install_routes(app: FastAPI) -> None:
    def svc(request: Request) -> HandshakeService:
        return request.app.state.service

    @app.get("/api/pqc/keys")
    async def keys(request: Request) -> dict:
        return svc(request).keys_document()

    @app.post("/api/pqc/handshake/hello")
    async def hello(request: Request) -> dict:
        return await svc(request).hello(await _json_body(request))

    @app.post("/api/pqc/handshake/key-exchange")
    async def key_exchange(request: Request) -> dict:
        return await svc(request).key_exchange(await _json_body(request))

    @app.post("/api/pqc/session/verify")
    async def verify(request: Request) -> dict:
        return await svc(request).verify_session(await _json_body(request))

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
