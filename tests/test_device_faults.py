"""The engine's device path under injected faults, and the offload switches.

An ``Engine`` runs the real device backend in front of the real OpenSSL
backend. Faults are injected into the device runtime itself
(``Device.fail_next`` and ``Device.stall_next``): every request must still
succeed on the CPU, health must say degraded, and the background probe must
put the device back in service once the faults are cleared. The offload
tests switch the device path at run time, in the engine and in a real
server through ``pqc-engine offload``, and start servers that must refuse
``PQC_OFFLOAD=on`` without a device.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem

import engine.engine as engine_module
from bindings.runtime import Device
from engine import (
    BackendUnavailable,
    Engine,
    EngineConfig,
    Kind,
    UnsupportedParameterSet,
)
from engine.backends.device import DeviceBackend
from engine.backends.openssl import OpenSSLBackend
from service.client import ClientError, PqcClient
from service.protocol import DEFAULT_SUITE
from tests.server import REPO_ROOT, ServerProcess, free_port, server_env

pytestmark = pytest.mark.timeout(90)

PROBE_INTERVAL = 0.05  # seconds between probes of a degraded device
TIMEOUT_MS = 200  # PQC_DEVICE_TIMEOUT_MS of the fault tests
STALL_MS = 2000  # an injected stall, ten times the timeout
FOREVER = 1_000_000  # a fault count no test run can use up
REQUESTS = 200  # concurrent requests while the device is failing
AFTER = 50  # requests once it is back
HANG = 60.0  # seconds before a wait is declared a hang
SWITCH_WAIT = 10.0  # hang guard for a server to follow the offload switch
KEM, SIG = "ML-KEM-768", "ML-DSA-65"
SUITE_512 = "MLKEM512-MLDSA44-AES128GCM-SHA256"
UNKNOWN_DEVICE_REFUSAL = (
    "PQC_OFFLOAD=on, but no device backend is present and passing its self-tests "
    "(PQC_DEVICE='nonexistent' names no device runtime built here; the built "
    "runtime is 'host'); use PQC_OFFLOAD=auto to fall back to the CPU."
)


@pytest.fixture
def stack(monkeypatch) -> Iterator[tuple[Engine, Device]]:
    """A started engine (device, then OpenSSL) and the device's runtime handle."""
    monkeypatch.setattr(engine_module, "PROBE_INTERVAL", PROBE_INTERVAL)
    config = EngineConfig(device_timeout_ms=TIMEOUT_MS, cpu_backend="openssl")
    device = DeviceBackend(config)
    with Engine(config, backends=[device, OpenSSLBackend(threads=2)]) as eng:
        try:
            yield eng, device.device
        finally:
            # Stalled launches would otherwise hold up the device's close.
            device.device.clear_faults()


class Workload:
    """A mix of requests of every kind, each with an answer checked outside.

    Expected answers come from cryptography (OpenSSL) directly, not from
    the engine, so a wrong answer from either path is caught.
    """

    def __init__(self, eng: Engine) -> None:
        rng = random.Random("device-faults")
        sig_seed = rng.randbytes(32)
        self.key = eng.load_signing_key(SIG, sig_seed)
        self.public = mldsa.MLDSA65PublicKey.from_public_bytes(self.key.public_key)
        self.dk_seed = rng.randbytes(64)
        self.kem_key = mlkem.MLKEM768PrivateKey.from_seed_bytes(self.dk_seed)
        self.ek = self.kem_key.public_key().public_bytes_raw()
        self.ss, self.ct = self.kem_key.public_key().encapsulate()
        self.message = rng.randbytes(100)
        signer = mldsa.MLDSA65PrivateKey.from_seed_bytes(sig_seed)
        self.signature = signer.sign(self.message, b"ctx")

    async def request(self, eng: Engine, i: int) -> None:
        """Run request number ``i`` (its kind is i mod 5) and check it."""
        kind = i % 5
        if kind == 0:
            seed = i.to_bytes(2, "big") * 32
            pair = await eng.kem_keygen(KEM, seed)
            private = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
            assert pair.ek == private.public_key().public_bytes_raw()
        elif kind == 1:
            out = await eng.kem_encaps(KEM, self.ek)
            assert self.kem_key.decapsulate(out.ct) == out.ss
        elif kind == 2:
            assert await eng.kem_decaps(KEM, self.dk_seed, self.ct) == self.ss
        elif kind == 3:
            message = b"request %d" % i
            signature = await eng.sign(self.key, message, b"ctx")
            self.public.verify(signature, message, b"ctx")
        else:
            pk = self.key.public_key
            assert await eng.verify(SIG, pk, self.message, self.signature, b"ctx")

    async def run(self, eng: Engine, count: int, start: int = 0) -> None:
        """``count`` requests at once; every one must succeed."""
        requests = [self.request(eng, i) for i in range(start, start + count)]
        await asyncio.wait_for(asyncio.gather(*requests), HANG)


async def settle(predicate: Callable[[], bool], what: str) -> None:
    """Wait until ``predicate()`` holds; give up (fail) after HANG seconds."""
    deadline = time.monotonic() + HANG
    while not predicate():
        assert time.monotonic() < deadline, f"Gave up waiting for {what}."
        await asyncio.sleep(0.02)


def by_backend(eng: Engine) -> dict[str, int]:
    return eng.statistics()["operations_by_backend"]


def paths(eng: Engine) -> tuple[str, str, str]:
    health = eng.health()
    return health["status"], health["device"], health["active_path"]


async def check_fallback_and_recovery(eng: Engine, device: Device, error: str) -> None:
    """REQUESTS succeed on the CPU; after clear_faults the device serves again."""
    work = Workload(eng)
    assert paths(eng) == ("ok", "ok", "device")

    await work.run(eng, REQUESTS)

    snap = eng.statistics()
    assert snap["operations_by_backend"] == {"openssl": REQUESTS}
    assert snap["fallbacks"] >= 1
    assert set(snap["fallback_reasons"]) == {"DeviceError"}
    assert paths(eng) == ("degraded", "degraded", "cpu")
    state = eng.health()["backends"][0]
    assert (state["name"], state["state"]) == ("device", "degraded")
    assert state["last_error"] == f"DeviceError: {error}"

    device.clear_faults()
    await settle(lambda: eng.health()["device"] == "ok", "the probe to pass")

    assert paths(eng) == ("ok", "ok", "device")
    await work.run(eng, AFTER, start=REQUESTS)
    assert by_backend(eng) == {"openssl": REQUESTS, "device": AFTER}


async def test_failing_launches_fall_back_to_the_cpu_and_recover(stack):
    eng, device = stack
    device.fail_next(FOREVER)

    await check_fallback_and_recovery(
        eng,
        device,
        "Synchronizing the stream failed: The device failed while running the work.",
    )


async def test_stalled_launches_time_out_to_the_cpu_and_recover(stack):
    eng, device = stack
    device.stall_next(STALL_MS, FOREVER)

    await check_fallback_and_recovery(
        eng,
        device,
        "Synchronizing the stream failed: The work did not finish before the "
        "deadline; it keeps running.",
    )


async def test_one_failed_launch_costs_one_fallback_and_heals_itself(stack):
    eng, device = stack
    work = Workload(eng)
    device.fail_next(1)

    await work.request(eng, 2)

    assert device.info().faults == 1
    snap = eng.statistics()
    assert snap["fallbacks_by_kind"] == {f"kem_decaps/{KEM}": 1}
    assert snap["operations_by_backend"] == {"openssl": 1}
    # The fault is used up, so the probe passes without clear_faults().
    await settle(lambda: eng.health()["device"] == "ok", "the probe to pass")
    await work.request(eng, 7)
    assert by_backend(eng) == {"openssl": 1, "device": 1}


async def test_set_offload_routes_everything_to_the_cpu_and_back(stack):
    eng, _ = stack
    work = Workload(eng)

    eng.set_offload(False)
    assert paths(eng) == ("ok", "off", "cpu")
    assert not eng.serves(Kind.KEM_KEYGEN, "ML-KEM-512")
    with pytest.raises(UnsupportedParameterSet):
        await eng.kem_keygen("ML-KEM-512")
    await work.run(eng, 25)
    assert by_backend(eng) == {"openssl": 25}

    eng.set_offload(True)
    assert paths(eng) == ("ok", "ok", "device")
    pair = await eng.kem_keygen("ML-KEM-512", bytes(64))
    out = await eng.kem_encaps("ML-KEM-512", pair.ek)
    assert await eng.kem_decaps("ML-KEM-512", pair.dk_seed, out.ct) == out.ss
    await work.run(eng, 25, start=25)
    assert by_backend(eng) == {"openssl": 25, "device": 25 + 3}


# -- PQC_OFFLOAD=on without a device -------------------------------------------


def test_offload_on_with_an_unknown_device_refuses_to_start():
    eng = Engine(
        EngineConfig(offload="on", device="nonexistent", cpu_backend="openssl")
    )
    try:
        with pytest.raises(BackendUnavailable) as caught:
            eng.start()
    finally:
        eng.close()

    assert str(caught.value) == UNKNOWN_DEVICE_REFUSAL


def test_a_server_with_offload_on_and_an_unknown_device_exits(tmp_path):
    env = {"PQC_OFFLOAD": "on", "PQC_DEVICE": "nonexistent"}
    env["PQC_KEY_DIR"] = str(tmp_path / "keys")
    command = [sys.executable, "-m", "service.cli", "serve"]
    command += ["--host", "127.0.0.1", "--port", str(free_port())]

    done = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=server_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=HANG,
    )

    assert done.returncode != 0
    assert UNKNOWN_DEVICE_REFUSAL in done.stdout + done.stderr


# -- a real server on the device -----------------------------------------------


def offload_command(state: str, key_dir) -> None:
    command = [sys.executable, "-m", "service.cli", "offload", state]
    done = subprocess.run(
        [*command, "--key-dir", str(key_dir)],
        cwd=REPO_ROOT,
        env=server_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"offload: {state}"


def health_when(http: httpx.Client, predicate: Callable[[dict], bool]) -> dict:
    """Poll /api/pqc/health until ``predicate`` holds (SWITCH_WAIT hang guard)."""
    deadline = time.monotonic() + SWITCH_WAIT
    while True:
        health = http.get("/api/pqc/health").json()
        if predicate(health):
            return health
        assert time.monotonic() < deadline, f"The server stayed at {health}."
        time.sleep(0.1)


@pytest.mark.timeout(120)
def test_a_server_serves_from_the_device_and_follows_offload(serve, response_log):
    server: ServerProcess = serve.start({"PQC_OFFLOAD": "auto"})
    http = response_log.client(server.url)

    health = http.get("/api/pqc/health").json()
    assert (health["status"], health["device"], health["active_path"]) == (
        "ok",
        "ok",
        "device",
    )
    assert SUITE_512 in health["suites"]
    sdk_http = response_log.client(server.url)
    with PqcClient(server.url, trust_on_first_use=True, http=sdk_http) as client:
        session = client.handshake([SUITE_512])
        assert session.suite == SUITE_512
        assert client.verify_session(session)["session_id"] == session.session_id

        offload_command("off", server.key_dir)
        health = health_when(http, lambda h: h["device"] == "off")
        assert health["active_path"] == "cpu"
        assert SUITE_512 not in health["suites"]
        with pytest.raises(ClientError) as refused:
            client.handshake([SUITE_512])
        assert refused.value.code == "no_common_suite"
        assert client.handshake([DEFAULT_SUITE]).suite == DEFAULT_SUITE

        offload_command("on", server.key_dir)
        health = health_when(http, lambda h: h["device"] == "ok")
        assert health["active_path"] == "device"
        assert SUITE_512 in health["suites"]
        assert client.handshake([SUITE_512]).suite == SUITE_512
