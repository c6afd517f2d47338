"""The engine: routes batches to backends, falls back, and keeps key slots.

``Engine`` is the public face of this package. Callers submit one lane at a
time (``await engine.run(...)`` or the typed helpers); the scheduler groups
lanes into batches and calls ``_execute``, which runs each batch on the
first healthy backend that serves it. A batch that fails there is re-run on
the next backend (the CPU), the failing backend is marked degraded, and a
background probe re-runs its self-tests until it passes again (design.md,
"Engine contracts"): no request fails because the device did.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from engine import params as P
from engine._bridge import Inbox
from engine._scheduler import Scheduler
from engine._stats import Statistics
from engine.backends.base import Backend, check_bytes
from engine.config import EngineConfig
from engine.errors import (
    BackendUnavailable,
    EngineClosed,
    InvalidInput,
    UnsupportedParameterSet,
)
from engine.ops import (
    INPUT_TYPES,
    KemDecapsIn,
    KemEncapsIn,
    KemEncapsOut,
    KemKeygenIn,
    KemKeyPair,
    Kind,
    OpKey,
    SigKeygenIn,
    SigKeyPair,
    SigSignIn,
    SigVerifyIn,
    normalise_lane,
)
from engine.selftest import SelfTestReport, run_selftests

logger = logging.getLogger(__name__)

PROBE_INTERVAL = 5.0  # seconds between self-test probes of a degraded backend


@dataclass
class _BackendState:
    backend: Backend
    report: SelfTestReport | None = None
    degraded_since: float | None = None
    last_error: str | None = None
    probing: bool = False
    next_probe: float = 0.0

    @property
    def usable(self) -> bool:
        return self.report is not None and self.report.passed

    @property
    def healthy(self) -> bool:
        return self.usable and self.degraded_since is None


@dataclass(frozen=True)
class SigningKey:
    """A signing key expanded into every backend that signs (a key slot)."""

    slot: int
    param: str
    public_key: bytes = field(repr=False)


class Engine:
    """Batched ML-KEM and ML-DSA over a device path and CPU fallbacks."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        backends: Sequence[Backend] | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        # Why the default device backend could not be opened, for start().
        self._device_problem: str | None = None
        if backends is not None:
            given = list(backends)
        else:
            given, self._device_problem = _default_backends(self.config)
        self._states = [_BackendState(b) for b in given]
        self._offload_enabled = self.config.offload != "off"
        self._serving: dict[bool, frozenset[OpKey]] = {}
        self._stats = Statistics()
        self._slots = itertools.count(1)
        self._keys: dict[int, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        self._inboxes: dict[asyncio.AbstractEventLoop, Inbox] = {}
        self._scheduler: Scheduler | None = None
        self._started = False
        self._closed = False

    def start(self) -> Engine:
        """Self-test every backend and start the scheduler.

        Raises ``BackendUnavailable`` if no backend passes, or if
        ``PQC_OFFLOAD=on`` and no device backend passes.
        """
        if self._started:
            return self
        try:
            self._self_test_all()
        except BaseException:
            for state in self._states:
                state.backend.close()
            raise
        self._scheduler = Scheduler(
            self._execute,
            batch_max=self.config.batch_max,
            batch_wait=self.config.batch_wait_us / 1e6,
            queue_max=self.config.queue_max,
            stats=self._stats,
        )
        self._started = True
        logger.info("Engine started; active path: %s", self.active_path())
        return self

    def _self_test_all(self) -> None:
        for state in self._states:
            state.report = run_selftests(state.backend)
        self._serving.clear()
        if not any(s.usable for s in self._states):
            raise BackendUnavailable("No crypto backend passed its self-tests.")
        if self.config.offload == "on" and not any(
            s.usable and s.backend.path == "device" for s in self._states
        ):
            problem = self._device_problem
            why = f" ({problem.rstrip('.')})" if problem else ""
            raise BackendUnavailable(
                "PQC_OFFLOAD=on, but no device backend is present and passing its "
                f"self-tests{why}; use PQC_OFFLOAD=auto to fall back to the CPU."
            )

    def close(self) -> None:
        """Stop accepting work, fail queued work, and release backends."""
        if self._closed:
            return
        self._closed = True
        if self._scheduler is not None:
            self._scheduler.close()
        for state in self._states:
            state.backend.close()

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- submitting work -------------------------------------------------

    def submit(self, kind: Kind | str, param: str, lane: tuple) -> Future:
        """Queue one lane; its future holds the result or the lane's error."""
        scheduler, key, lane = self._admit(kind, param, lane)
        return scheduler.submit(key, lane)

    def _admit(
        self, kind: Kind | str, param: str, lane: tuple
    ) -> tuple[Scheduler, OpKey, tuple]:
        """The running scheduler, the lane's queue and the lane, checked."""
        # Before start() no backend has passed its self-tests, so the
        # capability check below would misreport a stopped engine.
        scheduler = self._scheduler
        if scheduler is None or self._closed:
            raise EngineClosed("The engine is not running; call start() first.")
        key = self._check(_kind(kind), param, lane)
        return scheduler, key, normalise_lane(lane)

    def has_room(self, kind: Kind | str) -> bool:
        """Whether every queue of ``kind`` can take another request now.

        A hint for callers about to consume something that a refusal would
        waste (the service checks it before taking a pending handshake).
        """
        if self._scheduler is None:
            return False
        kind = _kind(kind)
        return self._scheduler.has_room(lambda key: key.kind is kind)

    async def run(self, kind: Kind | str, param: str, lane: tuple) -> object:
        """Run one lane inside a batch and return its result."""
        scheduler, key, lane = self._admit(kind, param, lane)
        inbox = self._inbox(asyncio.get_running_loop())
        ticket = inbox.ticket()
        scheduler.submit_to(key, lane, ticket)
        return await inbox.wait(ticket)

    def _inbox(self, loop: asyncio.AbstractEventLoop) -> Inbox:
        """The inbox of ``loop``; those of closed loops are dropped."""
        inbox = self._inboxes.get(loop)
        if inbox is None:
            with self._lock:
                self._inboxes = {
                    k: v for k, v in self._inboxes.items() if not k.is_closed()
                }
                inbox = self._inboxes.setdefault(loop, Inbox(loop))
        return inbox

    def run_sync(
        self, kind: Kind | str, param: str, lane: tuple, timeout: float | None = None
    ) -> object:
        return self.submit(kind, param, lane).result(timeout)

    async def kem_keygen(self, param: str, seed: bytes | None = None) -> KemKeyPair:
        seed = os.urandom(P.KEM_SEED_BYTES) if seed is None else seed
        return await self.run(Kind.KEM_KEYGEN, param, KemKeygenIn(seed))

    async def kem_encaps(self, param: str, ek: bytes) -> KemEncapsOut:
        return await self.run(Kind.KEM_ENCAPS, param, KemEncapsIn(ek))

    async def kem_decaps(self, param: str, dk: bytes, ct: bytes) -> bytes:
        return await self.run(Kind.KEM_DECAPS, param, KemDecapsIn(dk, ct))

    async def sig_keygen(self, param: str, seed: bytes | None = None) -> SigKeyPair:
        seed = os.urandom(P.SIG_SEED_BYTES) if seed is None else seed
        return await self.run(Kind.SIG_KEYGEN, param, SigKeygenIn(seed))

    async def sign(
        self, key: SigningKey, message: bytes, context: bytes = b""
    ) -> bytes:
        lane = SigSignIn(key.slot, message, context)
        return await self.run(Kind.SIG_SIGN, key.param, lane)

    async def verify(
        self,
        param: str,
        pk: bytes,
        message: bytes,
        signature: bytes,
        context: bytes = b"",
    ) -> bool:
        lane = SigVerifyIn(pk, message, signature, context)
        return await self.run(Kind.SIG_VERIFY, param, lane)

    # -- signing-key slots -----------------------------------------------

    def load_signing_key(self, param: str, seed: bytes) -> SigningKey:
        """Expand ``seed`` into a new key slot on every backend that signs.

        ``seed`` is the 32-byte xi, or an expanded FIPS 204 secret key for
        backends that take one. A backend that fails to load it is marked
        degraded (its probe loads the key again) as long as another one did.
        """
        if self._closed:
            raise EngineClosed("The engine is closed; no key can be loaded.")
        spec = P.sig_params(param)
        seed = check_bytes("The ML-DSA key", seed)
        if len(seed) not in (P.SIG_SEED_BYTES, spec.sk_bytes):
            raise InvalidInput(
                f"An {param} signing key must be a {P.SIG_SEED_BYTES}-byte seed or "
                f"a {spec.sk_bytes}-byte secret key, not {len(seed)} bytes."
            )
        slot = next(self._slots)
        with self._lock:
            self._keys[slot] = (param, seed)
        public, error = None, None
        key = OpKey(Kind.SIG_SIGN, param)
        for state in [s for s in self._states if s.usable and s.backend.serves(key)]:
            try:
                public = state.backend.load_signing_key(slot, param, seed)
            except InvalidInput:
                raise
            except Exception as exc:
                error = exc
                self._degrade(state, key, exc)
        if public is None:
            with self._lock:
                self._keys.pop(slot, None)
            if error is not None:
                raise BackendUnavailable(f"No backend could load the {param} key.")
            raise UnsupportedParameterSet(f"No enabled backend signs with {param}.")
        return SigningKey(slot, param, public)

    def unload_signing_key(self, key: SigningKey) -> None:
        with self._lock:
            self._keys.pop(key.slot, None)
        for state in self._states:
            state.backend.drop_signing_key(key.slot)

    # -- what is served, and how it is going -----------------------------

    def serves(self, kind: Kind | str, param: str) -> bool:
        return OpKey(_kind(kind), param) in self.serving()

    def serving(self) -> frozenset[OpKey]:
        """Every (kind, parameter set) some usable, allowed backend serves.

        Cached per offload setting: it is asked on every submit, and only
        self-tests (at start) and the offload switch change it.
        """
        cached = self._serving.get(self._offload_enabled)
        if cached is None:
            cached = frozenset(
                key
                for s in self._states
                if s.usable and self._allowed(s)
                for key in s.backend.capabilities()
            )
            self._serving[self._offload_enabled] = cached
        return cached

    def _allowed(self, state: _BackendState) -> bool:
        return state.backend.path != "device" or self._offload_enabled

    def set_offload(self, enabled: bool) -> None:
        """Switch the device path on or off at run time (CPU serves when off)."""
        self._offload_enabled = enabled
        logger.info("Offload %s at run time.", "enabled" if enabled else "disabled")

    def active_path(self) -> str:
        for state in self._routable():
            return state.backend.path
        return "none"

    def active_backend(self) -> str:
        """The backend that takes new batches first (``none`` if none can)."""
        for state in self._routable():
            return state.backend.name
        return "none"

    def statistics(self) -> dict[str, object]:
        snap = self._stats.snapshot()
        snap["queue_depth"] = self._scheduler.depth() if self._scheduler else {}
        snap["active_path"] = self.active_path()
        snap["backends"] = [self._describe(s) for s in self._states]
        return snap

    def health(self) -> dict[str, object]:
        """ok, degraded (a backend is down but another serves) or down."""
        usable = [s for s in self._states if s.usable]
        healthy = [s for s in usable if s.healthy]
        status = "ok"
        if not healthy or self._closed:
            status = "down"
        elif len(healthy) < len(usable):
            status = "degraded"
        return {
            "status": status,
            "active_path": self.active_path(),
            "active_backend": self.active_backend(),
            "device": self._device_state(),
            "selftests_passed": all(s.usable for s in self._states),
            "backends": [self._describe(s) for s in self._states],
        }

    # -- internals -------------------------------------------------------

    def _check(self, kind: Kind, param: str, lane: tuple) -> OpKey:
        if not isinstance(param, str):
            raise TypeError(f"param must be a str, not {type(param).__name__}.")
        if not isinstance(lane, INPUT_TYPES[kind]):
            raise TypeError(
                f"A {kind.value} lane must be a {INPUT_TYPES[kind].__name__}, "
                f"not {type(lane).__name__}."
            )
        key = OpKey(kind, param)
        if key not in self.serving():
            raise UnsupportedParameterSet(f"No enabled backend serves {key}.")
        return key

    def _routable(self) -> list[_BackendState]:
        return [s for s in self._states if s.healthy and self._allowed(s)]

    def _execute(self, key: OpKey, lanes: Sequence[tuple]) -> list[object]:
        route = [s for s in self._routable() if s.backend.serves(key)]
        if not route:
            # Every backend that serves this is degraded: try them anyway.
            route = [
                s
                for s in self._states
                if s.usable and self._allowed(s) and s.backend.serves(key)
            ]
        last_error: Exception | None = None
        for state in route:
            try:
                results = state.backend.run_batch(key, lanes)
            except Exception as exc:
                last_error = exc
                self._degrade(state, key, exc)
                continue
            self._stats.record_backend(state.backend.name, len(lanes))
            return results
        raise BackendUnavailable(
            f"Every backend failed a batch of {key}."
        ) from last_error

    def _degrade(self, state: _BackendState, key: OpKey, exc: Exception) -> None:
        reason = type(exc).__name__
        self._stats.record_fallback(key, reason)
        with self._lock:
            first = state.degraded_since is None
            if first:
                state.degraded_since = time.time()
                state.next_probe = time.monotonic() + PROBE_INTERVAL
            state.last_error = f"{reason}: {exc}"
        if first:
            logger.warning(
                "Backend %s failed a batch of %s (%s); falling back.",
                state.backend.name, key, reason,
            )  # fmt: skip
        self._schedule_probe(state)

    def _schedule_probe(self, state: _BackendState) -> None:
        with self._lock:
            if state.probing or self._closed:
                return
            state.probing = True
        thread = threading.Thread(target=self._probe, args=(state,), daemon=True)
        thread.start()

    def _probe(self, state: _BackendState) -> None:
        """Re-run a degraded backend's self-tests until it passes again."""
        while not self._closed and state.degraded_since is not None:
            time.sleep(max(0.0, state.next_probe - time.monotonic()))
            if self._closed:
                break
            if run_selftests(state.backend).passed and self._reload_keys(state):
                # One critical section: a failure landing between clearing
                # the mark and ending the probe would otherwise find a probe
                # still "running" and leave the backend degraded for good.
                with self._lock:
                    state.degraded_since = None
                    state.last_error = None
                    state.probing = False
                logger.info(
                    "Backend %s passed its probe; serving again.", state.backend.name
                )
                return
            state.next_probe = time.monotonic() + PROBE_INTERVAL
        with self._lock:
            state.probing = False

    def _reload_keys(self, state: _BackendState) -> bool:
        """Put every live signing key back into a recovered backend's slots."""
        with self._lock:
            keys = dict(self._keys)
        try:
            for slot, (param, seed) in keys.items():
                if state.backend.serves(OpKey(Kind.SIG_SIGN, param)):
                    state.backend.load_signing_key(slot, param, seed)
        except Exception as exc:
            state.last_error = f"reloading keys: {type(exc).__name__}"
            return False
        return True

    def _describe(self, state: _BackendState) -> dict[str, object]:
        info = dict(state.backend.describe())
        info["selftests_passed"] = state.usable
        info["state"] = (
            "failed"
            if not state.usable
            else "degraded"
            if state.degraded_since
            else "ok"
        )
        if state.report and state.report.failures:
            info["selftest_failures"] = list(state.report.failures)
        if state.last_error:
            info["last_error"] = state.last_error
        return info

    def _device_state(self) -> str:
        devices = [s for s in self._states if s.backend.path == "device"]
        if not devices:
            return "absent" if self.config.offload != "off" else "off"
        if not self._offload_enabled:
            return "off"
        if any(s.healthy for s in devices):
            return "ok"
        return "degraded" if any(s.usable for s in devices) else "failed"


def _kind(kind: Kind | str) -> Kind:
    if type(kind) is Kind:
        return kind
    try:
        return Kind(kind)
    except ValueError:
        raise UnsupportedParameterSet(
            f"{kind!r} is not an operation kind; expected one of "
            f"{', '.join(k.value for k in Kind)}."
        ) from None


def _default_backends(config: EngineConfig) -> tuple[list[Backend], str | None]:
    """The device backend (when offload allows it), then the CPU backends.

    Also returns why the device backend is missing, if it was wanted.
    """
    backends: list[Backend] = []
    problem = None
    if config.offload != "off":
        device, problem = _load_device_backend(config)
        if device is not None:
            backends.append(device)
    backends.extend(_cpu_backends(config))
    return backends, problem


def _load_device_backend(config: EngineConfig) -> tuple[Backend | None, str | None]:
    try:
        from engine.backends.device import DeviceBackend
    except ImportError:
        logger.info("No device backend is built into this installation.")
        return None, "no device backend is built into this installation"
    try:
        return DeviceBackend(config), None
    except BackendUnavailable as exc:
        logger.warning("The device backend is unavailable: %s", exc)
        return None, str(exc)


def _cpu_backends(config: EngineConfig) -> list[Backend]:
    from engine.backends.openssl import OpenSSLBackend

    threads = config.cpu_threads or None
    choice = config.cpu_backend
    backends: list[Backend] = []
    if choice in ("auto", "liboqs"):
        from engine.backends.liboqs import LiboqsBackend

        try:
            backends.append(LiboqsBackend())
        except BackendUnavailable as exc:
            if choice == "liboqs":
                raise
            logger.info("liboqs is not used: %s", exc)
    if choice in ("auto", "openssl"):
        backends.append(OpenSSLBackend(threads))
    chosen = ", ".join(b.name for b in backends)
    logger.info("CPU backend%s: %s", "s" if len(backends) > 1 else "", chosen)
    return backends
