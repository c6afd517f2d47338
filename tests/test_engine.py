"""The engine end to end on the real OpenSSL backend, and its fallback seam.

Batch composition is made exact with ``HeldOpenSSL``: the real backend with
a gate in front of each batch, so that lanes can queue behind a held one.
The fallback tests put a stand-in device path in front of OpenSSL; it gives
real answers until the test breaks it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Iterator, Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem

import engine.engine as engine_module
from engine import (
    KEM_PARAMS,
    SIG_PARAMS,
    BackendUnavailable,
    Engine,
    EngineClosed,
    EngineConfig,
    InvalidInput,
    KemDecapsIn,
    KemEncapsIn,
    KemKeygenIn,
    Kind,
    OpKey,
    QueueFull,
    SigKeygenIn,
    SigSignIn,
    SigVerifyIn,
    UnsupportedParameterSet,
)
from engine.backends.base import Backend
from engine.backends.openssl import OpenSSLBackend

pytestmark = pytest.mark.timeout(60)

HANG = 10.0  # seconds before a wait is declared a hang
LONG_WAIT_US = 10_000_000  # the longest batch_wait EngineConfig allows
CPU_KEMS = ["ML-KEM-768", "ML-KEM-1024"]
SIGS = list(SIG_PARAMS)
KEM_PRIVATE_KEYS = {
    "ML-KEM-768": mlkem.MLKEM768PrivateKey,
    "ML-KEM-1024": mlkem.MLKEM1024PrivateKey,
}
PUBLIC_KEYS = {
    "ML-DSA-44": mldsa.MLDSA44PublicKey,
    "ML-DSA-65": mldsa.MLDSA65PublicKey,
    "ML-DSA-87": mldsa.MLDSA87PublicKey,
}


class HeldOpenSSL(OpenSSLBackend):
    """The real OpenSSL backend with a gate in front of each batch.

    The gate is open until ``hold()``; from then on it records the size of
    every batch and keeps it waiting until ``release()``.
    """

    def __init__(self) -> None:
        super().__init__(threads=2)
        self._cond = threading.Condition()
        self._gate = threading.Event()
        self._gate.set()
        self.sizes: list[int] = []

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def wait_batches(self, count: int) -> list[int]:
        with self._cond:
            arrived = self._cond.wait_for(lambda: len(self.sizes) >= count, HANG)
            assert arrived, f"{len(self.sizes)} batches arrived, not {count}."
            return list(self.sizes)

    def run_batch(self, key: OpKey, lanes: Sequence[tuple]) -> list[object]:
        if not self._gate.is_set():
            with self._cond:
                self.sizes.append(len(lanes))
                self._cond.notify_all()
            if not self._gate.wait(HANG):
                raise RuntimeError("The test never released this batch.")
        return super().run_batch(key, lanes)


class FlakyDevice(Backend):
    """A stand-in device path: OpenSSL's answers until ``broken`` is set."""

    name = "fake-device"
    path = "device"

    def __init__(self) -> None:
        self._cpu = OpenSSLBackend(threads=1)
        self.broken = threading.Event()

    def capabilities(self) -> frozenset[OpKey]:
        return self._cpu.capabilities()

    def run_batch(self, key: OpKey, lanes: Sequence[tuple]) -> list[object]:
        if self.broken.is_set():
            raise BackendUnavailable("The fake device lost its context.")
        return self._cpu.run_batch(key, lanes)

    def load_signing_key(self, slot: int, param: str, seed: bytes) -> bytes:
        return self._cpu.load_signing_key(slot, param, seed)

    def drop_signing_key(self, slot: int) -> None:
        self._cpu.drop_signing_key(slot)

    def close(self) -> None:
        self._cpu.close()


class WrongKeygenDevice(FlakyDevice):
    """A device path whose ML-KEM key generation flips a byte of ``ek``."""

    name = "wrong-device"

    def run_batch(self, key: OpKey, lanes: Sequence[tuple]) -> list[object]:
        results = super().run_batch(key, lanes)
        if key.kind is not Kind.KEM_KEYGEN:
            return results
        return [r._replace(ek=r.ek[:-1] + bytes([r.ek[-1] ^ 1])) for r in results]


@pytest.fixture
def engine() -> Iterator[Engine]:
    with Engine(EngineConfig(offload="off", cpu_backend="openssl")) as eng:
        yield eng


@pytest.fixture
def held() -> Iterator[HeldOpenSSL]:
    backend = HeldOpenSSL()
    yield backend
    backend.release()


def start_held(held: HeldOpenSSL, **config: object) -> Engine:
    eng = Engine(EngineConfig(offload="off", **config), backends=[held]).start()
    held.hold()
    return eng


def expected_ek(param: str, seed: bytes) -> bytes:
    """ek straight from cryptography, bypassing the engine."""
    private = KEM_PRIVATE_KEYS[param].from_seed_bytes(seed)
    return private.public_key().public_bytes_raw()


def wait_until(predicate, what: str) -> None:
    """Poll a condition set by a background thread; a hang guard, not a timer."""
    deadline = time.monotonic() + HANG
    while not predicate():
        assert time.monotonic() < deadline, f"Gave up waiting for {what}."
        time.sleep(0.01)


# -- operations on the real OpenSSL backend --------------------------------


@pytest.mark.parametrize("param", CPU_KEMS)
async def test_kem_round_trip(engine, param):
    spec = KEM_PARAMS[param]
    seed = os.urandom(spec.seed_bytes)

    pair = await engine.kem_keygen(param, seed)
    sent = await engine.kem_encaps(param, pair.ek)
    received = await engine.kem_decaps(param, pair.dk_seed, sent.ct)

    assert pair.dk_seed == seed
    assert pair.ek == expected_ek(param, seed)
    assert len(sent.ct) == spec.ct_bytes and len(sent.ss) == spec.ss_bytes
    assert received == sent.ss
    # FIPS 203, Algorithm 18: a ciphertext that does not re-encrypt decaps to
    # J(z || c) = SHAKE256(z || c, 32), z being the seed's second half.
    forged = bytes([sent.ct[0] ^ 1]) + sent.ct[1:]
    rejected = await engine.kem_decaps(param, seed, forged)
    assert rejected == hashlib.shake_256(seed[32:] + forged).digest(32)


@pytest.mark.parametrize("param", CPU_KEMS)
def test_kem_round_trip_through_run_sync(engine, param):
    seed = bytes(range(64))
    pair = engine.run_sync(Kind.KEM_KEYGEN, param, KemKeygenIn(seed), HANG)
    sent = engine.run_sync(Kind.KEM_ENCAPS, param, KemEncapsIn(pair.ek), HANG)
    lane = KemDecapsIn(pair.dk_seed, sent.ct)
    assert engine.run_sync("kem_decaps", param, lane, HANG) == sent.ss


@pytest.mark.parametrize("param", SIGS)
async def test_sign_and_verify(engine, param):
    spec = SIG_PARAMS[param]
    seed = os.urandom(spec.seed_bytes)
    message, context = b"ServerHello transcript", b"pqc-hs/1"

    key = engine.load_signing_key(param, seed)
    signature = await engine.sign(key, message, context)

    pair = await engine.sig_keygen(param, seed)
    assert key.public_key == pair.pk and len(pair.pk) == spec.pk_bytes
    assert len(signature) == spec.sig_bytes
    PUBLIC_KEYS[param].from_public_bytes(pair.pk).verify(signature, message, context)
    assert await engine.verify(param, pair.pk, message, signature, context) is True
    assert await engine.verify(param, pair.pk, message, signature, b"other") is False
    assert await engine.verify(param, pair.pk, b"tampered", signature, context) is False


def test_unloaded_signing_key_is_refused_for_its_lane(engine):
    key = engine.load_signing_key("ML-DSA-65", bytes(32))
    engine.unload_signing_key(key)

    future = engine.submit(Kind.SIG_SIGN, "ML-DSA-65", SigSignIn(key.slot, b"m"))

    error = future.exception(HANG)
    assert isinstance(error, InvalidInput)
    assert str(error) == f"No signing key is loaded in slot {key.slot}."


def test_wrong_length_fails_only_its_own_lane_in_a_batch(held):
    eng = start_held(held, batch_max=5, batch_wait_us=LONG_WAIT_US)
    try:
        param, seed = "ML-KEM-768", bytes(range(64))
        public = KEM_PRIVATE_KEYS[param].from_seed_bytes(seed).public_key()
        sent = [public.encapsulate() for _ in range(5)]  # (ss, ct) pairs

        first = eng.submit(Kind.KEM_DECAPS, param, KemDecapsIn(seed, sent[0][1]))
        held.wait_batches(1)  # held, so that the next five queue behind it
        cts = [ct for _, ct in sent[1:]]
        cts.insert(2, sent[0][1][:-1])
        futures = [
            eng.submit(Kind.KEM_DECAPS, param, KemDecapsIn(seed, ct)) for ct in cts
        ]
        assert held.wait_batches(2) == [1, 5]
        held.release()

        assert first.result(HANG) == sent[0][0]
        error = futures.pop(2).exception(HANG)
        assert isinstance(error, InvalidInput)
        assert str(error) == (
            "The ciphertext must be 1088 bytes long, but it is 1087 bytes."
        )
        assert [f.result(HANG) for f in futures] == [ss for ss, _ in sent[1:]]
        assert eng.statistics()["batch_size_histogram"] == {"<=1": 1, "<=8": 1}
    finally:
        eng.close()


async def test_task_cancelled_while_its_batch_runs(held):
    eng = start_held(held, batch_max=3, batch_wait_us=LONG_WAIT_US)
    try:
        param = "ML-KEM-1024"
        seeds = [bytes([n]) * 64 for n in range(4)]
        first = asyncio.create_task(eng.kem_keygen(param, seeds[0]))
        await asyncio.to_thread(held.wait_batches, 1)
        tasks = [asyncio.create_task(eng.kem_keygen(param, s)) for s in seeds[1:]]
        assert await asyncio.to_thread(held.wait_batches, 2) == [1, 3]

        tasks[1].cancel()
        held.release()
        results = await asyncio.gather(first, *tasks, return_exceptions=True)

        assert isinstance(results[2], asyncio.CancelledError)
        for index in (0, 1, 3):
            assert results[index].ek == expected_ek(param, seeds[index])
    finally:
        eng.close()


def test_ml_kem_512_is_unsupported_on_the_cpu_engine(engine):
    assert not engine.serves(Kind.KEM_KEYGEN, "ML-KEM-512")
    with pytest.raises(UnsupportedParameterSet) as caught:
        engine.submit(Kind.KEM_KEYGEN, "ML-KEM-512", KemKeygenIn(bytes(64)))
    assert str(caught.value) == "No enabled backend serves kem_keygen/ML-KEM-512."
    assert caught.value.retryable is False


def test_lane_of_the_wrong_type_is_a_type_error(engine):
    with pytest.raises(TypeError, match="must be a KemEncapsIn, not SigKeygenIn"):
        engine.submit(Kind.KEM_ENCAPS, "ML-KEM-768", SigKeygenIn(bytes(32)))


def test_statistics_count_batches_waits_and_rejections(held):
    eng = start_held(held, queue_max=1, batch_max=4, batch_wait_us=LONG_WAIT_US)
    try:
        lane = KemKeygenIn(bytes(64))
        first = eng.submit(Kind.KEM_KEYGEN, "ML-KEM-768", lane)
        held.wait_batches(1)
        queued = eng.submit(Kind.KEM_KEYGEN, "ML-KEM-768", lane)
        with pytest.raises(QueueFull):
            eng.submit(Kind.KEM_KEYGEN, "ML-KEM-768", lane)
        held.release()
        assert first.result(HANG) == queued.result(HANG)

        snap = eng.statistics()
    finally:
        eng.close()

    name = "kem_keygen/ML-KEM-768"
    assert snap["operations"] == 2 and snap["batches"] == 2
    assert snap["mean_batch_size"] == 1.0
    assert snap["operations_by_kind"] == {name: 2}
    assert snap["batches_by_kind"] == {name: 2}
    assert snap["operations_by_backend"] == {"openssl": 2}
    assert snap["batch_size_histogram"] == {"<=1": 2}
    waits = snap["queue_wait_ms"]
    assert set(waits) == {"mean", "p50", "p99", "max"}
    assert waits["max"] > 0  # the queued lane waited behind the held one
    assert waits["max"] >= waits["p99"] >= waits["p50"] >= 0
    assert snap["rejections"] == 1 and snap["rejections_by_kind"] == {name: 1}
    assert snap["fallbacks"] == 0 and snap["fallbacks_by_kind"] == {}
    assert snap["cancelled"] == 0
    assert snap["queue_depth"] == {name: 0}
    assert snap["active_path"] == "cpu"
    assert [b["name"] for b in snap["backends"]] == ["openssl"]


# -- lifecycle -----------------------------------------------------------------


def test_submit_outside_start_and_close_raises_engine_closed():
    eng = Engine(EngineConfig(offload="off", cpu_backend="openssl"))
    lane = KemKeygenIn(bytes(64))
    with pytest.raises(EngineClosed, match="call start"):
        eng.submit(Kind.KEM_KEYGEN, "ML-KEM-768", lane)

    eng.start()
    assert eng.run_sync(Kind.KEM_KEYGEN, "ML-KEM-768", lane, HANG).dk_seed == bytes(64)
    eng.close()

    with pytest.raises(EngineClosed):
        eng.submit(Kind.KEM_KEYGEN, "ML-KEM-768", lane)
    assert eng.health()["status"] == "down"


def test_offload_on_without_a_device_refuses_to_start():
    eng = Engine(EngineConfig(offload="on"), backends=[OpenSSLBackend(threads=1)])
    try:
        with pytest.raises(BackendUnavailable) as caught:
            eng.start()
    finally:
        eng.close()
    message = str(caught.value)
    assert message.startswith("PQC_OFFLOAD=on, but no device backend is present")
    assert message.endswith("use PQC_OFFLOAD=auto to fall back to the CPU.")


def test_no_backend_passing_self_tests_refuses_to_start():
    eng = Engine(EngineConfig(), backends=[WrongKeygenDevice()])
    try:
        with pytest.raises(BackendUnavailable, match="No crypto backend passed"):
            eng.start()
    finally:
        eng.close()


# -- the device seam: fallback, degrade, probe -------------------------------


@pytest.fixture
def device_engine(monkeypatch) -> Iterator[tuple[Engine, FlakyDevice]]:
    monkeypatch.setattr(engine_module, "PROBE_INTERVAL", 0.02)
    device = FlakyDevice()
    eng = Engine(EngineConfig(), backends=[device, OpenSSLBackend(threads=1)])
    with eng.start():
        yield eng, device


def by_backend(eng: Engine) -> dict[str, int]:
    return eng.statistics()["operations_by_backend"]


def test_healthy_device_serves_first(device_engine):
    eng, _ = device_engine
    eng.run_sync(Kind.SIG_KEYGEN, "ML-DSA-44", SigKeygenIn(bytes(32)), HANG)

    health = eng.health()
    assert (health["status"], health["device"], health["active_path"]) == (
        "ok",
        "ok",
        "device",
    )
    assert by_backend(eng) == {"fake-device": 1}


def test_failed_device_batches_rerun_on_the_cpu_and_recover(device_engine):
    eng, device = device_engine
    key = eng.load_signing_key("ML-DSA-65", bytes(range(32)))
    device.broken.set()

    seed = bytes(range(64))
    pair = eng.run_sync(Kind.KEM_KEYGEN, "ML-KEM-768", KemKeygenIn(seed), HANG)
    signature = eng.run_sync(Kind.SIG_SIGN, key.param, SigSignIn(key.slot, b"m"), HANG)
    lane = SigVerifyIn(key.public_key, b"m", signature)
    verified = eng.run_sync(Kind.SIG_VERIFY, key.param, lane, HANG)

    assert pair.ek == expected_ek("ML-KEM-768", seed)
    assert verified is True
    snap = eng.statistics()
    assert snap["fallbacks"] == 1
    assert snap["fallbacks_by_kind"] == {"kem_keygen/ML-KEM-768": 1}
    assert snap["fallback_reasons"] == {"BackendUnavailable": 1}
    assert snap["operations_by_backend"] == {"openssl": 3}
    health = eng.health()
    assert (health["status"], health["device"], health["active_path"]) == (
        "degraded",
        "degraded",
        "cpu",
    )
    assert health["backends"][0]["state"] == "degraded"
    assert health["backends"][0]["last_error"] == (
        "BackendUnavailable: The fake device lost its context."
    )

    device.broken.clear()
    wait_until(lambda: eng.health()["device"] == "ok", "the probe to restore it")

    assert eng.health()["status"] == "ok" and eng.active_path() == "device"
    signature = eng.run_sync(Kind.SIG_SIGN, key.param, SigSignIn(key.slot, b"m"), HANG)
    lane = SigVerifyIn(key.public_key, b"m", signature)
    assert eng.run_sync(Kind.SIG_VERIFY, key.param, lane, HANG) is True
    assert by_backend(eng) == {"openssl": 3, "fake-device": 2}


def test_set_offload_switches_the_device_path(device_engine):
    eng, _ = device_engine
    lane = SigKeygenIn(bytes(32))

    eng.set_offload(False)
    eng.run_sync(Kind.SIG_KEYGEN, "ML-DSA-87", lane, HANG)
    assert (eng.health()["device"], eng.active_path()) == ("off", "cpu")

    eng.set_offload(True)
    eng.run_sync(Kind.SIG_KEYGEN, "ML-DSA-87", lane, HANG)
    assert (eng.health()["device"], eng.active_path()) == ("ok", "device")
    assert by_backend(eng) == {"openssl": 1, "fake-device": 1}


def test_backend_failing_self_tests_is_not_used():
    eng = Engine(EngineConfig(), backends=[WrongKeygenDevice(), OpenSSLBackend(1)])
    with eng.start():
        seed = bytes(64)
        pair = eng.run_sync(Kind.KEM_KEYGEN, "ML-KEM-768", KemKeygenIn(seed), HANG)
        health = eng.health()
        stats = eng.statistics()

    assert pair.ek == expected_ek("ML-KEM-768", seed)
    assert stats["operations_by_backend"] == {"openssl": 1}
    assert health["device"] == "failed"
    assert health["selftests_passed"] is False
    assert health["active_path"] == "cpu"
    device = health["backends"][0]
    assert (device["name"], device["state"]) == ("wrong-device", "failed")
    assert "ML-KEM-768 keygen: wrong answer" in device["selftest_failures"]
    assert "ML-KEM-1024 keygen: wrong answer" in device["selftest_failures"]


def test_offload_on_refuses_a_device_failing_self_tests():
    backends = [WrongKeygenDevice(), OpenSSLBackend(threads=1)]
    eng = Engine(EngineConfig(offload="on"), backends=backends)
    try:
        with pytest.raises(BackendUnavailable, match="no device backend"):
            eng.start()
    finally:
        eng.close()
