"""bindings/runtime.py: Device, Stream, Buffer and whole-batch runs.

Batches run through the pip-built extension on the host device runtime
and are compared lane by lane with the single-call C kernels and with the
ACVP vectors, for batch sizes 0, 1, 7, 65 and 1000.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from engine.errors import BackendUnavailable, PqcError, UnsupportedParameterSet
from engine.params import KEM_PARAMS, SIG_PARAMS, KemParams, SigParams
from tests.vectors import hexbytes, load

try:
    from bindings._pqc_kernels import ffi, lib

    from bindings.runtime import (
        Buffer,
        Device,
        DeviceError,
        Kernel,
        Stream,
        device_count,
        kernel_layout,
        kernel_param,
        status_message,
    )
except ImportError as exc:  # pragma: no cover - a setup problem, said loudly
    raise ImportError(
        "bindings._pqc_kernels is not built: run `pip install -e .` first."
    ) from exc

OK = lib.PQC_OK
LONG_STALL_MS = 600_000  # ended by clear_faults(), never waited out
SIZES = [0, 1, 7, 65]
KEM = pytest.mark.parametrize("params", list(KEM_PARAMS.values()), ids=list(KEM_PARAMS))
SIG = pytest.mark.parametrize("params", list(SIG_PARAMS.values()), ids=list(SIG_PARAMS))


@pytest.fixture
def device():
    with Device(threads=4) as dev:
        yield dev


# ---- Single-call references ----------------------------------------------------


def _call(func, *args) -> None:
    assert func(*args) == OK


def _out(size: int):
    return ffi.new("uint8_t[]", size)


def kem_keygen(k: int, seed: bytes) -> tuple[bytes, bytes]:
    ek, dk = _out(lib.mlkem_ek_bytes(k)), _out(lib.mlkem_dk_bytes(k))
    _call(lib.mlkem_keygen, k, ek, dk, seed)
    return bytes(ek), bytes(dk)


def kem_encaps(k: int, ek: bytes, m: bytes) -> tuple[bytes, bytes]:
    ct, ss = _out(lib.mlkem_ct_bytes(k)), _out(32)
    _call(lib.mlkem_encaps, k, ct, ss, ek, m)
    return bytes(ct), bytes(ss)


def sig_keygen(ps: int, xi: bytes) -> tuple[bytes, bytes]:
    pk, sk = _out(lib.mldsa_pk_bytes(ps)), _out(lib.mldsa_sk_bytes(ps))
    _call(lib.mldsa_keygen, ps, pk, sk, xi)
    return bytes(pk), bytes(sk)


def sig_sign_mu(ps: int, sk: bytes, mu: bytes, rnd: bytes) -> bytes:
    sig = _out(lib.mldsa_sig_bytes(ps))
    _call(lib.mldsa_sign_mu, ps, sig, sk, mu, rnd)
    return bytes(sig)


def records(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def rows(array: np.ndarray) -> list[bytes]:
    return [row.tobytes() for row in array]


def acvp_groups(relative: str, name: str, **match: object):
    for group in load(f"acvp/{relative}")["testGroups"]:
        if group["parameterSet"] == name and all(
            group.get(key) == value for key, value in match.items()
        ):
            yield group


def expected_results(relative: str) -> dict[int, dict]:
    doc = load(f"acvp/{relative}/expectedResults.json")
    return {t["tcId"]: t for g in doc["testGroups"] for t in g["tests"]}


# ---- Module surface ----------------------------------------------------------


def test_importing_without_the_extension_says_how_to_build_it():
    code = (
        "import sys\n"
        "sys.modules['bindings._pqc_kernels'] = None\n"
        "import bindings\n"
        "try:\n"
        "    import bindings.runtime\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "run `pip install -e .`" in result.stdout


def test_device_errors_are_retryable_backend_failures():
    error = DeviceError(lib.PQC_ERR_TIMEOUT, "Synchronizing the stream")
    assert isinstance(error, BackendUnavailable)
    assert isinstance(error, PqcError)
    assert error.retryable
    assert error.status == lib.PQC_ERR_TIMEOUT
    assert str(error) == (
        "Synchronizing the stream failed: " + status_message(lib.PQC_ERR_TIMEOUT)
    )
    assert status_message(lib.PQC_ERR_BUSY) == "The resource is busy with queued work."


def test_the_host_runtime_has_one_device():
    assert device_count() == 1


@pytest.mark.parametrize(
    ("kernel", "param", "number"),
    [
        (Kernel.MLKEM_KEYGEN, "ML-KEM-512", 2),
        (Kernel.MLKEM_DECAPS_SEED, "ML-KEM-1024", 4),
        (Kernel.MLDSA_SIGN_MU, "ML-DSA-65", 65),
        (Kernel.MLDSA_VERIFY_MU, 87, 87),
    ],
)
def test_parameter_names_map_to_c_numbers(kernel, param, number):
    assert kernel_param(kernel, param) == number
    assert kernel_layout(kernel, param).param == number


def test_unknown_parameters_and_kernels_are_refused():
    with pytest.raises(UnsupportedParameterSet):
        kernel_param(Kernel.MLKEM_KEYGEN, "ML-DSA-65")
    with pytest.raises(UnsupportedParameterSet):
        kernel_param(Kernel.MLDSA_KEYGEN, "ML-KEM-768")
    with pytest.raises(TypeError):
        kernel_param(Kernel.MLDSA_KEYGEN, 65.0)
    with pytest.raises(DeviceError) as caught:
        kernel_layout(Kernel.MLKEM_KEYGEN, 5)
    assert caught.value.status == lib.PQC_ERR_INVALID_ARG
    with pytest.raises(ValueError):
        kernel_layout(99, 3)


@KEM
def test_kem_layouts_name_their_records(params: KemParams):
    lay = kernel_layout(Kernel.MLKEM_ENCAPS, params.name)
    assert lay.inputs == (("ek", params.ek_bytes), ("m", 32))
    assert lay.outputs == (("ct", params.ct_bytes), ("ss", 32))


@SIG
def test_sig_layouts_name_their_records(params: SigParams):
    lay = kernel_layout(Kernel.MLDSA_SIGN_MU, params.name)
    assert lay.inputs == (("slot", 4), ("mu", 64), ("rnd", 32))
    assert lay.outputs == (("sig", params.sig_bytes),)
    lay = kernel_layout(Kernel.MLDSA_VERIFY_MU, params.name)
    assert lay.inputs == (
        ("pk", params.pk_bytes),
        ("mu", 64),
        ("sig", params.sig_bytes),
    )
    assert lay.outputs == ()


# ---- Devices, streams, buffers ---------------------------------------------------


def test_device_info_and_close():
    dev = Device(threads=3)
    info = dev.info()
    chosen = ffi.string(lib.pqc_impl_name()).decode()
    assert (info.name, info.implementation, info.threads) == ("host", chosen, 3)
    assert (info.abi_version, info.device_id, info.launches) == (1, 0, 0)

    with dev:
        assert not dev.closed
    assert dev.closed
    dev.close()
    with pytest.raises(DeviceError) as caught:
        dev.info()
    assert caught.value.status == lib.PQC_ERR_INVALID_ARG
    with pytest.raises(DeviceError):
        dev.malloc(1)


def test_opening_a_missing_device_fails():
    with pytest.raises(DeviceError) as caught:
        Device(device_id=1)
    assert caught.value.status == lib.PQC_ERR_INVALID_ARG


def test_buffers_and_streams_round_trip(device):
    data = os.urandom(48)
    back = np.zeros(64, dtype=np.uint8)
    with device.stream() as stream, device.malloc(64) as buf:
        assert isinstance(stream, Stream) and isinstance(buf, Buffer)
        stream.copy_from_host(buf, data, offset=16)
        stream.copy_from_host(buf, np.frombuffer(data[:16], dtype=np.uint8))
        stream.copy_to_host(back, buf)
        stream.synchronize()
        assert stream.query()
    assert back.tobytes() == data[:16] + data
    assert buf.freed
    buf.free()
    with pytest.raises(DeviceError):
        buf.handle()


def test_stream_calls_report_c_statuses(device):
    stream, buf = device.stream(), device.malloc(8)
    with pytest.raises(DeviceError) as caught:
        stream.copy_from_host(buf, bytes(9))
    assert caught.value.status == lib.PQC_ERR_INVALID_LENGTH
    with pytest.raises(TypeError):
        stream.copy_from_host(buf, "text")
    with pytest.raises(ValueError):
        stream.copy_to_host(np.zeros(16, dtype=np.uint8)[::2], buf)
    with pytest.raises(TypeError):
        stream.copy_to_host(bytes(8), buf)
    with pytest.raises(ValueError):
        device.malloc(-1)
    with pytest.raises(ValueError):
        stream.synchronize(-5)
    stream.destroy()
    with pytest.raises(DeviceError):
        stream.query()


@pytest.mark.timeout(30)
def test_stream_launch_then_synchronize(device):
    n, k = 7, 2
    seeds = os.urandom(64 * n)
    lay = kernel_layout(Kernel.MLKEM_KEYGEN, "ML-KEM-512")
    bufs = [device.malloc(n * size) for _, size in lay.inputs + lay.outputs]
    status = device.malloc(4 * n)
    ek = np.empty((n, lay.outputs[0][1]), dtype=np.uint8)
    lanes = np.full(n, 99, dtype=np.int32)

    stream = device.stream()
    device.stall_next(LONG_STALL_MS)
    stream.copy_from_host(bufs[0], seeds)
    stream.launch(Kernel.MLKEM_KEYGEN, "ML-KEM-512", n, bufs, status)
    stream.copy_to_host(ek, bufs[1])
    stream.copy_to_host(lanes, status)
    assert not stream.query()
    with pytest.raises(DeviceError) as caught:
        stream.synchronize(timeout_ms=0)
    assert caught.value.status == lib.PQC_ERR_TIMEOUT

    device.clear_faults()
    stream.synchronize()
    assert lanes.tolist() == [OK] * n
    assert rows(ek) == [kem_keygen(k, s)[0] for s in records(seeds, 64)]


# ---- Whole batches: ML-KEM ---------------------------------------------------------


def check_kem_batch(device: Device, params: KemParams, n: int) -> None:
    name, k = params.name, params.k
    seeds, coins = os.urandom(64 * n), os.urandom(32 * n)

    keys, st = device.run(Kernel.MLKEM_KEYGEN, name, n, {"seed": seeds})
    want = [kem_keygen(k, s) for s in records(seeds, 64)]
    assert st.tolist() == [OK] * n
    assert rows(keys["ek"]) == [ek for ek, _ in want]
    assert rows(keys["dk"]) == [dk for _, dk in want]

    enc, st = device.run(Kernel.MLKEM_ENCAPS, name, n, {"ek": keys["ek"], "m": coins})
    want = [
        kem_encaps(k, ek, m)
        for (ek, _), m in zip(want, records(coins, 32), strict=True)
    ]
    assert st.tolist() == [OK] * n
    assert rows(enc["ct"]) == [ct for ct, _ in want]
    assert rows(enc["ss"]) == [ss for _, ss in want]

    dec, st = device.run(
        Kernel.MLKEM_DECAPS, name, n, {"ct": enc["ct"], "dk": keys["dk"]}
    )
    assert st.tolist() == [OK] * n
    assert np.array_equal(dec["ss"], enc["ss"])
    inputs = {"ct": enc["ct"], "seed": seeds}
    dec, st = device.run(Kernel.MLKEM_DECAPS_SEED, name, n, inputs)
    assert st.tolist() == [OK] * n
    assert np.array_equal(dec["ss"], enc["ss"])


@pytest.mark.timeout(60)
@KEM
@pytest.mark.parametrize("n", SIZES)
def test_kem_batches_equal_single_calls(device, params, n):
    check_kem_batch(device, params, n)


@pytest.mark.timeout(60)
def test_a_kem_batch_of_1000(device):
    check_kem_batch(device, KEM_PARAMS["ML-KEM-768"], 1000)


@KEM
def test_kem_batches_match_acvp(device, params):
    for group in acvp_groups(
        "ML-KEM-keyGen-FIPS203/internalProjection.json", params.name
    ):
        tests = group["tests"]
        seeds = b"".join(hexbytes(t["d"]) + hexbytes(t["z"]) for t in tests)
        out, st = device.run(
            Kernel.MLKEM_KEYGEN, params.name, len(tests), {"seed": seeds}
        )
        assert st.tolist() == [OK] * len(tests)
        assert rows(out["ek"]) == [hexbytes(t["ek"]) for t in tests]
        assert rows(out["dk"]) == [hexbytes(t["dk"]) for t in tests]

    path = "ML-KEM-encapDecap-FIPS203/internalProjection.json"
    for group in acvp_groups(path, params.name, function="encapsulation"):
        tests = group["tests"]
        inputs = {
            "ek": b"".join(hexbytes(t["ek"]) for t in tests),
            "m": b"".join(hexbytes(t["m"]) for t in tests),
        }
        out, st = device.run(Kernel.MLKEM_ENCAPS, params.name, len(tests), inputs)
        assert st.tolist() == [OK] * len(tests)
        assert rows(out["ct"]) == [hexbytes(t["c"]) for t in tests]
        assert rows(out["ss"]) == [hexbytes(t["k"]) for t in tests]

    for group in acvp_groups(path, params.name, function="decapsulation"):
        tests = group["tests"]
        inputs = {
            "ct": b"".join(hexbytes(t["c"]) for t in tests),
            "dk": b"".join(hexbytes(t["dk"]) for t in tests),
        }
        out, st = device.run(Kernel.MLKEM_DECAPS, params.name, len(tests), inputs)
        assert st.tolist() == [OK] * len(tests)
        assert rows(out["ss"]) == [hexbytes(t["k"]) for t in tests]


def test_bad_lanes_fail_alone(device):
    params = KEM_PARAMS["ML-KEM-512"]
    ek, _ = kem_keygen(2, os.urandom(64))
    broken = b"\xff" * 384 + ek[384:]  # t-hat coefficients of 4095 >= q
    inputs = {"ek": ek + broken + ek, "m": bytes(96)}
    out, st = device.run(Kernel.MLKEM_ENCAPS, params.name, 3, inputs)
    assert st.tolist() == [OK, lib.PQC_ERR_INVALID_KEY, OK]
    assert out["ct"][1].tobytes() == bytes(params.ct_bytes)
    assert out["ct"][0].tobytes() == kem_encaps(2, ek, bytes(32))[0]


# ---- Whole batches: ML-DSA ---------------------------------------------------------


def check_sig_batch(device: Device, params: SigParams, n: int) -> None:
    name, ps = params.name, params.number
    xi, mu, rnd = os.urandom(32 * n), os.urandom(64 * n), os.urandom(32 * n)

    keys, st = device.run(Kernel.MLDSA_KEYGEN, name, n, {"xi": xi})
    want = [sig_keygen(ps, x) for x in records(xi, 32)]
    assert st.tolist() == [OK] * n
    assert rows(keys["pk"]) == [pk for pk, _ in want]
    assert rows(keys["sk"]) == [sk for _, sk in want]

    slot, pk = device.load_key_seed(name, xi[:32] if n else os.urandom(32))
    sk = want[0][1] if n else None
    inputs = {"slot": [slot] * n, "mu": mu, "rnd": rnd}
    signed, st = device.run(Kernel.MLDSA_SIGN_MU, name, n, inputs)
    assert st.tolist() == [OK] * n
    assert rows(signed["sig"]) == [
        sig_sign_mu(ps, sk, m, r)
        for m, r in zip(records(mu, 64), records(rnd, 32), strict=True)
    ]

    inputs = {"pk": pk * n, "mu": mu, "sig": signed["sig"]}
    _, st = device.run(Kernel.MLDSA_VERIFY_MU, name, n, inputs)
    assert st.tolist() == [OK] * n
    device.free_key(slot)


@pytest.mark.timeout(60)
@SIG
@pytest.mark.parametrize("n", SIZES)
def test_sig_batches_equal_single_calls(device, params, n):
    check_sig_batch(device, params, n)


@pytest.mark.timeout(60)
def test_a_sig_batch_of_1000(device):
    check_sig_batch(device, SIG_PARAMS["ML-DSA-44"], 1000)


@SIG
def test_sig_batches_match_acvp(device, params):
    for group in acvp_groups(
        "ML-DSA-keyGen-FIPS204/internalProjection.json", params.name
    ):
        tests = group["tests"]
        xi = b"".join(hexbytes(t["seed"]) for t in tests)
        out, st = device.run(Kernel.MLDSA_KEYGEN, params.name, len(tests), {"xi": xi})
        assert st.tolist() == [OK] * len(tests)
        assert rows(out["pk"]) == [hexbytes(t["pk"]) for t in tests]
        assert rows(out["sk"]) == [hexbytes(t["sk"]) for t in tests]


@SIG
def test_signing_with_key_slots_matches_acvp(device, params):
    path = "ML-DSA-sigGen-FIPS204"
    expected = expected_results(path)
    groups = acvp_groups(
        f"{path}/prompt.json",
        params.name,
        signatureInterface="internal",
        externalMu=True,
    )
    for group in groups:
        tests = group["tests"]
        slots = [device.load_key_sk(params.name, hexbytes(t["sk"])) for t in tests]
        rnd = b"".join(
            bytes(32) if group["deterministic"] else hexbytes(t["rnd"]) for t in tests
        )
        inputs = {"slot": slots, "mu": b"".join(hexbytes(t["mu"]) for t in tests)}
        out, st = device.run(
            Kernel.MLDSA_SIGN_MU, params.name, len(tests), {**inputs, "rnd": rnd}
        )
        assert st.tolist() == [OK] * len(tests)
        assert rows(out["sig"]) == [
            hexbytes(expected[t["tcId"]]["signature"]) for t in tests
        ]
        for slot in slots:
            device.free_key(slot)


@SIG
def test_verifying_matches_acvp(device, params):
    path = "ML-DSA-sigVer-FIPS204/internalProjection.json"
    groups = acvp_groups(
        path, params.name, signatureInterface="internal", externalMu=True
    )
    for group in groups:
        tests = group["tests"]
        inputs = {
            name: b"".join(hexbytes(t[field]) for t in tests)
            for name, field in (("pk", "pk"), ("mu", "mu"), ("sig", "signature"))
        }
        _, st = device.run(Kernel.MLDSA_VERIFY_MU, params.name, len(tests), inputs)
        want = [OK if t["testPassed"] else lib.PQC_ERR_INVALID_SIGNATURE for t in tests]
        assert st.tolist() == want


def test_key_slot_management(device):
    xi = os.urandom(32)
    pk, sk = sig_keygen(65, xi)
    slot, got_pk = device.load_key_seed("ML-DSA-65", xi)
    assert got_pk == pk
    other = device.load_key_sk("ML-DSA-65", sk)
    assert device.info().key_slots_used == 2

    device.free_key(slot)
    with pytest.raises(DeviceError) as caught:
        device.free_key(slot)
    assert caught.value.status == lib.PQC_ERR_INVALID_ARG
    mu, rnd = os.urandom(128), bytes(64)
    out, st = device.run(
        Kernel.MLDSA_SIGN_MU,
        "ML-DSA-65",
        2,
        {"slot": [slot, other], "mu": mu, "rnd": rnd},
    )
    assert st.tolist() == [lib.PQC_ERR_INVALID_KEY, OK]
    assert out["sig"][1].tobytes() == sig_sign_mu(65, sk, mu[64:], rnd[32:])

    with pytest.raises(ValueError):
        device.load_key_seed("ML-DSA-65", bytes(31))
    with pytest.raises(ValueError):
        device.load_key_sk("ML-DSA-65", sk[:-1])
    with pytest.raises(TypeError):
        device.load_key_sk("ML-DSA-65", list(sk))


# ---- Inputs -----------------------------------------------------------------------


def test_inputs_may_be_bytes_or_numpy(device):
    seeds = np.frombuffer(os.urandom(64 * 6), dtype=np.uint8).reshape(6, 64)
    spaced = np.zeros((12, 64), dtype=np.uint8)
    spaced[::2] = seeds
    by_bytes, _ = device.run(Kernel.MLKEM_KEYGEN, 3, 6, {"seed": seeds.tobytes()})
    by_array, _ = device.run(Kernel.MLKEM_KEYGEN, 3, 6, {"seed": seeds})
    by_view, _ = device.run(Kernel.MLKEM_KEYGEN, 3, 6, {"seed": spaced[::2]})
    assert np.array_equal(by_bytes["ek"], by_array["ek"])
    assert np.array_equal(by_bytes["dk"], by_view["dk"])
    assert by_array["ek"].shape == (6, KEM_PARAMS["ML-KEM-768"].ek_bytes)


def test_input_errors_are_python_errors(device):
    run = device.run
    with pytest.raises(ValueError, match="'seed' is missing"):
        run(Kernel.MLKEM_KEYGEN, 3, 2, {})
    with pytest.raises(ValueError, match=r"must be 128 bytes .* but it is 127"):
        run(Kernel.MLKEM_KEYGEN, 3, 2, {"seed": bytes(127)})
    with pytest.raises(TypeError):
        run(Kernel.MLKEM_KEYGEN, 3, 1, {"seed": "x" * 64})
    with pytest.raises(ValueError):
        run(Kernel.MLKEM_KEYGEN, 3, -1, {"seed": b""})
    with pytest.raises(TypeError):
        run(Kernel.MLKEM_KEYGEN, 3, 1, {"seed": bytes(64)}, timeout_ms=1.5)
    with pytest.raises(UnsupportedParameterSet):
        run(Kernel.MLKEM_KEYGEN, "ML-KEM-2048", 1, {"seed": bytes(64)})


# ---- Faults, timeouts and concurrency ----------------------------------------------


@pytest.mark.timeout(30)
def test_a_timed_out_batch_raises_and_the_device_recovers(device):
    device.stall_next(LONG_STALL_MS)
    with pytest.raises(DeviceError) as caught:
        device.run(Kernel.MLKEM_KEYGEN, 2, 4, {"seed": bytes(256)}, timeout_ms=0)
    assert caught.value.status == lib.PQC_ERR_TIMEOUT
    assert "deadline" in str(caught.value)

    device.clear_faults()
    seeds = os.urandom(128)
    out, st = device.run(Kernel.MLKEM_KEYGEN, 2, 2, {"seed": seeds}, timeout_ms=60_000)
    assert st.tolist() == [OK, OK]
    assert out["ek"][1].tobytes() == kem_keygen(2, seeds[64:])[0]


@pytest.mark.timeout(30)
def test_a_failed_launch_raises_and_the_next_succeeds(device):
    device.fail_next(1)
    with pytest.raises(DeviceError) as caught:
        device.run(Kernel.MLKEM_KEYGEN, 4, 3, {"seed": bytes(192)})
    assert caught.value.status == lib.PQC_ERR_DEVICE

    out, st = device.run(Kernel.MLKEM_KEYGEN, 4, 3, {"seed": bytes(192)})
    assert st.tolist() == [OK] * 3
    assert out["ek"][2].tobytes() == kem_keygen(4, bytes(64))[0]
    assert device.info().faults == 1


@pytest.mark.timeout(30)
def test_a_short_stall_only_delays(device):
    device.stall_next(stall_ms=20, count=2)
    for _ in range(3):
        _, st = device.run(Kernel.MLKEM_KEYGEN, 2, 2, {"seed": bytes(128)})
        assert st.tolist() == [OK, OK]


@pytest.mark.timeout(30)
def test_destroying_a_busy_stream_keeps_its_work():
    seeds = os.urandom(64 * 2)
    ek = np.zeros((2, KEM_PARAMS["ML-KEM-512"].ek_bytes), dtype=np.uint8)
    dev = Device(threads=2)
    stream = dev.stream()
    dev.stall_next(LONG_STALL_MS)
    bufs = [dev.malloc(size) for size in (128, ek.nbytes, 2 * 1632, 8)]
    stream.copy_from_host(bufs[0], seeds)
    stream.launch(Kernel.MLKEM_KEYGEN, 2, 2, bufs[:3], bufs[3])
    stream.copy_to_host(ek, bufs[1])
    for buf in bufs:
        buf.free()

    stream.destroy()
    dev.clear_faults()
    dev.close()  # waits for the queued work
    assert rows(ek) == [kem_keygen(2, s)[0] for s in records(seeds, 64)]


@pytest.mark.timeout(60)
def test_64_threads_launching_at_once_match_one_thread():
    jobs = [os.urandom(64 * 5) for _ in range(64)]
    start = threading.Barrier(len(jobs))
    results: list[object] = [None] * len(jobs)

    with Device(threads=4) as dev:

        def work(index: int) -> None:
            start.wait()
            out, st = dev.run(Kernel.MLKEM_KEYGEN, 3, 5, {"seed": jobs[index]})
            results[index] = (rows(out["ek"]), rows(out["dk"]), st.tolist())

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        for seeds, got in zip(jobs, results, strict=True):
            out, st = dev.run(Kernel.MLKEM_KEYGEN, 3, 5, {"seed": seeds})
            assert got == (rows(out["ek"]), rows(out["dk"]), st.tolist())
            assert st.tolist() == [OK] * 5
        assert dev.info().launches == 2 * len(jobs)


@pytest.mark.timeout(60)
def test_a_small_pool_serves_many_threads():
    with Device(threads=2, pool_size=2) as dev:
        errors: list[BaseException] = []

        def work() -> None:
            try:
                _, st = dev.run(Kernel.MLKEM_KEYGEN, 2, 3, {"seed": bytes(192)})
                assert st.tolist() == [OK] * 3
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert dev.info().launches == 16
