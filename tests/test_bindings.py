"""The extension module bindings._pqc_kernels and the C device runtime ABI.

These tests call the C functions of kernels/include/pqc_dev.h directly
through cffi, so they check the ABI's own contract: statuses, handles,
stream order, timeouts, fault injection, key slots and lifetimes. The
Python layer (bindings/runtime.py) is tested in tests/test_runtime.py.

Stalls are released with PQC_DEV_FAULT_NONE rather than by waiting, so no
assertion depends on how fast the machine is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from engine.params import KEM_PARAMS, SIG_PARAMS

try:
    from bindings._pqc_kernels import ffi, lib
except ImportError as exc:  # pragma: no cover - a setup problem, said loudly
    raise ImportError(
        "bindings._pqc_kernels is not built: run `pip install -e .` first."
    ) from exc

OK = lib.PQC_OK
BAD = lib.PQC_ERR_INVALID_ARG
LENGTH = lib.PQC_ERR_INVALID_LENGTH
FOREVER = lib.PQC_DEV_WAIT_FOREVER
LONG_STALL_MS = 600_000  # ended by clear_faults(), never waited out
KEM = list(KEM_PARAMS.values())
SIG = list(SIG_PARAMS.values())
KEM_IDS = list(KEM_PARAMS)
SIG_IDS = list(SIG_PARAMS)

STATUSES = {
    "PQC_OK": 0,
    "PQC_ERR_INVALID_ARG": -1,
    "PQC_ERR_INVALID_LENGTH": -2,
    "PQC_ERR_INVALID_KEY": -3,
    "PQC_ERR_INVALID_SIGNATURE": -4,
    "PQC_ERR_INVALID_CONTEXT": -5,
    "PQC_ERR_NO_MEMORY": -6,
    "PQC_ERR_DEVICE": -7,
    "PQC_ERR_TIMEOUT": -8,
    "PQC_ERR_BUSY": -9,
}


# ---- Helpers -----------------------------------------------------------------


def open_device(threads: int = 4):
    out = ffi.new("pqc_dev **")
    assert lib.pqc_dev_open(0, threads, out) == OK
    return out[0]


def new_stream(dev):
    out = ffi.new("pqc_dev_stream **")
    assert lib.pqc_dev_stream_create(dev, out) == OK
    return out[0]


def new_buffer(dev, size: int):
    out = ffi.new("pqc_dev_buffer **")
    assert lib.pqc_dev_malloc(dev, size, out) == OK
    return out[0]


def info(dev):
    out = ffi.new("pqc_dev_info *")
    assert lib.pqc_dev_get_info(dev, out) == OK
    return out


def layout(kernel: int, param: int) -> tuple[list[int], int, int]:
    sizes = ffi.new("size_t[]", lib.PQC_DEV_MAX_ARGS)
    n_in, n_out = ffi.new("unsigned *"), ffi.new("unsigned *")
    assert lib.pqc_dev_kernel_layout(kernel, param, sizes, n_in, n_out) == OK
    return list(sizes), n_in[0], n_out[0]


def stall_next(dev, count: int = 1) -> None:
    fault = lib.PQC_DEV_FAULT_STALL
    assert lib.pqc_dev_inject_fault(dev, fault, count, LONG_STALL_MS) == OK


def clear_faults(dev) -> None:
    assert lib.pqc_dev_inject_fault(dev, lib.PQC_DEV_FAULT_NONE, 0, 0) == OK


def h2d(dev, stream, buf, data, offset: int = 0) -> int:
    return lib.pqc_dev_memcpy_h2d(dev, stream, buf, offset, data, len(data))


def d2h(dev, stream, host, buf, offset: int = 0) -> int:
    """Fill all of host (a cffi array) from buf."""
    size = ffi.sizeof(host)
    return lib.pqc_dev_memcpy_d2h(dev, stream, host, buf, offset, size)


def sync(dev, stream, timeout_ms: int = FOREVER) -> int:
    return lib.pqc_dev_stream_synchronize(dev, stream, timeout_ms)


class Launch:
    """Device buffers and host mirrors for one launch of n lanes."""

    def __init__(self, dev, kernel: int, param: int, n: int) -> None:
        sizes, n_in, n_out = layout(kernel, param)
        self.dev, self.kernel, self.param, self.n = dev, kernel, param, n
        self.sizes = sizes[: n_in + n_out]
        self.n_in = n_in
        self.bufs = [new_buffer(dev, n * size) for size in self.sizes]
        self.status = new_buffer(dev, 4 * n)
        self.out = [ffi.new("uint8_t[]", n * s or 1) for s in self.sizes[n_in:]]
        self.lanes = ffi.new("int32_t[]", n or 1)
        self.keep: list[object] = []

    def put(self, stream, inputs: list[bytes]) -> None:
        for buf, data in zip(self.bufs[: self.n_in], inputs, strict=True):
            self.keep.append(data)
            assert h2d(self.dev, stream, buf, data) == OK

    def launch(self, stream) -> int:
        args = ffi.new("pqc_dev_buffer *[]", self.bufs)
        return lib.pqc_dev_launch(
            self.dev, stream, self.kernel, self.param, self.n, args, len(args),
            self.status,
        )  # fmt: skip

    def get(self, stream) -> None:
        outs = self.bufs[self.n_in :]
        for host, buf in zip(self.out, outs, strict=True):
            assert d2h(self.dev, stream, host, buf) == OK
        assert d2h(self.dev, stream, self.lanes, self.status) == OK

    def queue(self, stream, inputs: list[bytes]) -> None:
        self.put(stream, inputs)
        assert self.launch(stream) == OK
        self.get(stream)

    def output(self, index: int, lane: int) -> bytes:
        size = self.sizes[self.n_in + index]
        return bytes(ffi.buffer(self.out[index])[lane * size : (lane + 1) * size])

    def statuses(self) -> list[int]:
        return list(self.lanes)[: self.n]


def single_keygen(k: int, seed: bytes) -> tuple[bytes, bytes]:
    ek = ffi.new("uint8_t[]", lib.mlkem_ek_bytes(k))
    dk = ffi.new("uint8_t[]", lib.mlkem_dk_bytes(k))
    assert lib.mlkem_keygen(k, ek, dk, seed) == OK
    return bytes(ffi.buffer(ek)), bytes(ffi.buffer(dk))


@pytest.fixture
def dev():
    handle = open_device()
    yield handle
    assert lib.pqc_dev_close(handle) == OK


@pytest.fixture
def stream(dev):
    return new_stream(dev)


# ---- Constants, messages, devices -------------------------------------------


def test_status_codes_match_pqc_status_h():
    for name, value in STATUSES.items():
        assert getattr(lib, name) == value
    assert lib.PQC_DEV_ABI_VERSION == 1
    assert lib.PQC_DEV_MAX_ARGS == 4


def test_every_status_has_its_own_sentence():
    messages = {
        ffi.string(lib.pqc_dev_status_message(v)).decode() for v in STATUSES.values()
    }
    assert len(messages) == len(STATUSES)
    assert all(m[0].isupper() and m.endswith(".") for m in messages)
    unknown = ffi.string(lib.pqc_dev_status_message(-1000)).decode()
    assert unknown == "The status code is unknown."
    timeout = ffi.string(lib.pqc_dev_status_message(lib.PQC_ERR_TIMEOUT)).decode()
    assert "deadline" in timeout


def test_host_runtime_offers_one_device():
    count = ffi.new("uint32_t *")
    assert lib.pqc_dev_count(count) == OK
    assert count[0] == 1
    assert lib.pqc_dev_count(ffi.NULL) == BAD


@pytest.mark.parametrize(
    ("device_id", "threads"),
    [(1, 1), (0, 257), (2**32 - 1, 0)],
    ids=["id", "threads", "max-id"],
)
def test_open_refuses_bad_arguments(device_id, threads):
    out = ffi.new("pqc_dev **")
    assert lib.pqc_dev_open(device_id, threads, out) == BAD
    assert out[0] == ffi.NULL
    assert lib.pqc_dev_open(0, 1, ffi.NULL) == BAD


def test_info_describes_the_host_device(dev):
    got = info(dev)
    assert ffi.string(got.name) == b"host"
    # The kernel implementation the CPUID probe chose.
    assert ffi.string(got.impl) == ffi.string(lib.pqc_impl_name())
    assert ffi.string(got.impl) in (b"avx512", b"avx2", b"ref")
    assert got.abi_version == lib.PQC_DEV_ABI_VERSION
    assert (got.device_id, got.threads) == (0, 4)
    assert (got.max_streams, got.max_key_slots, got.queue_depth) == (256, 1024, 1024)
    assert got.mem_limit == 1 << 30
    assert (got.mem_used, got.launches, got.lanes, got.faults) == (0, 0, 0, 0)
    assert lib.pqc_dev_get_info(dev, ffi.NULL) == BAD


def test_zero_threads_means_one_per_online_core():
    handle = open_device(threads=0)
    try:
        assert info(handle).threads == min(os.sysconf("SC_NPROCESSORS_ONLN"), 256)
    finally:
        assert lib.pqc_dev_close(handle) == OK


def test_a_closed_device_refuses_every_call():
    handle = open_device(threads=1)
    stream = new_stream(handle)
    buf = new_buffer(handle, 16)
    assert lib.pqc_dev_close(handle) == OK
    out = ffi.new("pqc_dev_stream **")
    assert lib.pqc_dev_close(handle) == BAD
    assert lib.pqc_dev_get_info(handle, ffi.new("pqc_dev_info *")) == BAD
    assert lib.pqc_dev_stream_create(handle, out) == BAD
    assert lib.pqc_dev_stream_synchronize(handle, stream, 0) == BAD
    assert lib.pqc_dev_free(handle, buf) == BAD
    assert lib.pqc_dev_inject_fault(handle, lib.PQC_DEV_FAULT_NONE, 0, 0) == BAD
    assert lib.pqc_dev_key_free(handle, 0) == BAD
    assert lib.pqc_dev_close(ffi.NULL) == BAD


def test_handles_of_another_device_are_refused(dev):
    other = open_device(threads=1)
    try:
        stream, buf = new_stream(other), new_buffer(other, 8)
        size = ffi.new("size_t *")
        assert lib.pqc_dev_stream_query(dev, stream) == BAD
        assert lib.pqc_dev_buffer_size(dev, buf, size) == BAD
        assert lib.pqc_dev_free(dev, buf) == BAD
        assert lib.pqc_dev_stream_destroy(dev, stream) == BAD
    finally:
        assert lib.pqc_dev_close(other) == OK


# ---- Streams and buffers -----------------------------------------------------


def test_stream_destroy_twice_is_refused(dev):
    stream = new_stream(dev)
    assert lib.pqc_dev_stream_query(dev, stream) == OK
    assert lib.pqc_dev_stream_destroy(dev, stream) == OK
    assert lib.pqc_dev_stream_destroy(dev, stream) == BAD
    assert lib.pqc_dev_stream_query(dev, stream) == BAD
    assert lib.pqc_dev_stream_create(dev, ffi.NULL) == BAD


def test_stream_count_is_bounded(dev):
    streams = [new_stream(dev) for _ in range(info(dev).max_streams)]
    out = ffi.new("pqc_dev_stream **")
    assert lib.pqc_dev_stream_create(dev, out) == lib.PQC_ERR_NO_MEMORY
    assert lib.pqc_dev_stream_destroy(dev, streams[0]) == OK
    assert lib.pqc_dev_stream_create(dev, out) == OK


def test_buffer_round_trip_at_an_offset(dev, stream):
    buf = new_buffer(dev, 100)
    size = ffi.new("size_t *")
    assert lib.pqc_dev_buffer_size(dev, buf, size) == OK and size[0] == 100

    data = os.urandom(60)
    back = ffi.new("uint8_t[]", 100)
    assert lib.pqc_dev_memcpy_h2d(dev, stream, buf, 10, data, 60) == OK
    assert lib.pqc_dev_memcpy_d2h(dev, stream, back, buf, 0, 100) == OK
    assert sync(dev, stream) == OK
    assert ffi.buffer(back)[:] == bytes(10) + data + bytes(30)


@pytest.mark.parametrize(
    ("offset", "size", "status"),
    [
        (0, 17, "PQC_ERR_INVALID_LENGTH"),
        (16, 1, "PQC_ERR_INVALID_LENGTH"),
        (17, 0, "PQC_ERR_INVALID_LENGTH"),
        (1, 2**64 - 1, "PQC_ERR_INVALID_LENGTH"),
        (16, 0, "PQC_OK"),
        (0, 16, "PQC_OK"),
    ],
)
def test_copies_stay_inside_the_buffer(dev, stream, offset, size, status):
    buf = new_buffer(dev, 16)
    host = ffi.new("uint8_t[]", 16)
    expected = getattr(lib, status)
    assert lib.pqc_dev_memcpy_h2d(dev, stream, buf, offset, host, size) == expected
    assert lib.pqc_dev_memcpy_d2h(dev, stream, host, buf, offset, size) == expected
    assert sync(dev, stream) == OK


def test_copies_refuse_null_memory_and_freed_buffers(dev, stream):
    buf = new_buffer(dev, 16)
    assert lib.pqc_dev_memcpy_h2d(dev, stream, buf, 0, ffi.NULL, 1) == BAD
    assert lib.pqc_dev_memcpy_d2h(dev, stream, ffi.NULL, buf, 0, 1) == BAD
    assert lib.pqc_dev_memcpy_h2d(dev, stream, buf, 0, ffi.NULL, 0) == OK

    assert lib.pqc_dev_free(dev, buf) == OK
    assert lib.pqc_dev_free(dev, buf) == BAD
    assert lib.pqc_dev_memcpy_h2d(dev, stream, buf, 0, b"x", 1) == BAD
    assert lib.pqc_dev_buffer_size(dev, buf, ffi.new("size_t *")) == BAD


def test_memory_is_bounded_and_accounted(dev):
    out = ffi.new("pqc_dev_buffer **")
    limit = info(dev).mem_limit
    assert lib.pqc_dev_malloc(dev, limit + 1, out) == lib.PQC_ERR_NO_MEMORY
    assert lib.pqc_dev_malloc(dev, 2**64 - 1, out) == lib.PQC_ERR_NO_MEMORY
    assert out[0] == ffi.NULL
    assert lib.pqc_dev_malloc(dev, 16, ffi.NULL) == BAD

    empty, small = new_buffer(dev, 0), new_buffer(dev, 1000)
    assert info(dev).mem_used == 1000
    assert lib.pqc_dev_free(dev, small) == OK
    assert lib.pqc_dev_free(dev, empty) == OK
    assert info(dev).mem_used == 0


def test_new_buffers_are_zeroed(dev, stream):
    buf = new_buffer(dev, 4096)
    back = ffi.new("uint8_t[]", [0xAA] * 4096)
    assert lib.pqc_dev_memcpy_d2h(dev, stream, back, buf, 0, 4096) == OK
    assert sync(dev, stream) == OK
    assert ffi.buffer(back)[:] == bytes(4096)


# ---- Kernel layouts and launches ---------------------------------------------


@pytest.mark.parametrize("params", KEM, ids=KEM_IDS)
def test_kem_layouts_follow_fips_203(params):
    ek, dk, ct = params.ek_bytes, params.dk_bytes, params.ct_bytes
    k = params.k
    assert layout(lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, k) == ([64, ek, dk, 0], 1, 2)
    assert layout(lib.PQC_DEV_KERNEL_MLKEM_ENCAPS, k) == ([ek, 32, ct, 32], 2, 2)
    assert layout(lib.PQC_DEV_KERNEL_MLKEM_DECAPS, k) == ([ct, dk, 32, 0], 2, 1)
    assert layout(lib.PQC_DEV_KERNEL_MLKEM_DECAPS_SEED, k) == ([ct, 64, 32, 0], 2, 1)


@pytest.mark.parametrize("params", SIG, ids=SIG_IDS)
def test_sig_layouts_follow_fips_204(params):
    pk, sk, sig = params.pk_bytes, params.sk_bytes, params.sig_bytes
    ps = params.number
    assert layout(lib.PQC_DEV_KERNEL_MLDSA_KEYGEN, ps) == ([32, pk, sk, 0], 1, 2)
    assert layout(lib.PQC_DEV_KERNEL_MLDSA_SIGN_MU, ps) == ([4, 64, 32, sig], 3, 1)
    assert layout(lib.PQC_DEV_KERNEL_MLDSA_VERIFY_MU, ps) == ([pk, 64, sig, 0], 3, 0)


@pytest.mark.parametrize(
    ("kernel", "param"),
    [(0, 3), (8, 3), (-1, 3), (1, 5), (1, 65), (5, 3), (6, 0), (7, 2**32 - 1)],
)
def test_layout_refuses_unknown_kernels_and_parameters(kernel, param):
    sizes = ffi.new("size_t[]", 4)
    n = ffi.new("unsigned *")
    assert lib.pqc_dev_kernel_layout(kernel, param, sizes, n, n) == BAD
    assert lib.pqc_dev_kernel_layout(1, 3, ffi.NULL, n, n) == BAD


@pytest.mark.parametrize("params", KEM, ids=KEM_IDS)
def test_keygen_launch_matches_single_calls(dev, stream, params):
    n = 7
    seeds = os.urandom(64 * n)
    batch = Launch(dev, lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, params.k, n)
    batch.queue(stream, [seeds])
    assert sync(dev, stream) == OK

    assert batch.statuses() == [OK] * n
    for i in range(n):
        ek, dk = single_keygen(params.k, seeds[64 * i : 64 * (i + 1)])
        assert (batch.output(0, i), batch.output(1, i)) == (ek, dk)
    got = info(dev)
    assert (got.launches, got.lanes) == (1, n)


def test_launch_argument_errors(dev, stream):
    k, n = 3, 4
    batch = Launch(dev, lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, k, n)
    small, tiny_status = new_buffer(dev, 64 * n - 1), new_buffer(dev, 4 * n - 1)
    seed, ek, dk = batch.bufs
    status = batch.status

    def launch(kernel=1, param=k, count=n, args=(seed, ek, dk), st=status):
        handles = ffi.new("pqc_dev_buffer *[]", list(args))
        return lib.pqc_dev_launch(
            dev, stream, kernel, param, count, handles, len(args), st
        )

    assert launch(kernel=0) == BAD
    assert launch(kernel=99) == BAD
    assert launch(param=5) == BAD
    assert launch(args=(seed, ek)) == BAD
    assert launch(args=(seed, ek, dk, status)) == BAD
    assert launch(args=(small, ek, dk)) == LENGTH
    assert launch(st=tiny_status) == LENGTH
    assert launch(args=(seed, ek, ek)) == BAD
    assert launch(st=dk) == BAD
    assert launch(st=ffi.NULL) == BAD
    assert launch(count=2**62) == LENGTH

    ghost = new_buffer(dev, 64 * n)
    assert lib.pqc_dev_free(dev, ghost) == OK
    assert launch(args=(ghost, ek, dk)) == BAD

    null = ffi.NULL
    assert lib.pqc_dev_launch(dev, stream, 1, k, 0, null, 3, null) == OK
    assert lib.pqc_dev_launch(dev, stream, 1, k, 1, null, 3, status) == BAD
    assert sync(dev, stream, -2) == BAD
    assert sync(dev, stream) == OK
    assert info(dev).launches == 1


# ---- Asynchrony, order, timeouts ---------------------------------------------


@pytest.mark.timeout(30)
def test_query_reports_busy_then_done(dev, stream):
    seeds = os.urandom(64 * 3)
    batch = Launch(dev, lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, 2, 3)
    stall_next(dev)
    batch.queue(stream, [seeds])

    assert lib.pqc_dev_stream_query(dev, stream) == lib.PQC_ERR_BUSY
    clear_faults(dev)
    assert sync(dev, stream) == OK
    assert lib.pqc_dev_stream_query(dev, stream) == OK
    assert batch.output(0, 2) == single_keygen(2, seeds[128:])[0]


@pytest.mark.timeout(30)
def test_timeout_then_a_later_synchronize_succeeds(dev, stream):
    seeds = os.urandom(64 * 5)
    batch = Launch(dev, lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, 3, 5)
    stall_next(dev)
    batch.queue(stream, [seeds])

    timeout = lib.PQC_ERR_TIMEOUT
    assert sync(dev, stream, 0) == timeout
    assert sync(dev, stream, 20) == timeout
    clear_faults(dev)
    assert sync(dev, stream) == OK
    assert batch.statuses() == [OK] * 5
    assert batch.output(1, 4) == single_keygen(3, seeds[256:])[1]


@pytest.mark.timeout(30)
def test_a_stream_runs_its_commands_in_order(dev, stream):
    """The second copy into the seed buffer waits for the first launch."""
    first, second = os.urandom(64 * 9), os.urandom(64 * 9)
    a = Launch(dev, lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, 3, 9)
    b = Launch(dev, lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, 3, 9)
    b.bufs[0] = a.bufs[0]

    stall_next(dev)
    a.queue(stream, [first])
    b.queue(stream, [second])
    clear_faults(dev)
    assert sync(dev, stream) == OK

    for i in (0, 8):
        assert a.output(0, i) == single_keygen(3, first[64 * i : 64 * i + 64])[0]
        assert b.output(0, i) == single_keygen(3, second[64 * i : 64 * i + 64])[0]


@pytest.mark.timeout(30)
def test_streams_run_independently(dev):
    held, free = new_stream(dev), new_stream(dev)
    a = Launch(dev, lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, 2, 2)
    b = Launch(dev, lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, 2, 2)
    stall_next(dev)
    a.queue(held, [bytes(128)])
    b.queue(free, [bytes(128)])

    assert lib.pqc_dev_stream_synchronize(dev, free, FOREVER) == OK
    assert b.statuses() == [OK, OK]
    assert lib.pqc_dev_stream_query(dev, held) == lib.PQC_ERR_BUSY
    clear_faults(dev)
    assert lib.pqc_dev_stream_synchronize(dev, held, FOREVER) == OK
    assert a.output(0, 1) == b.output(0, 1)


@pytest.mark.timeout(30)
def test_queue_depth_is_bounded(dev, stream):
    batch = Launch(dev, lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, 2, 1)
    stall_next(dev)
    assert batch.launch(stream) == OK  # holds the head of the stream
    host = ffi.new("uint8_t[]", 1)
    for _ in range(info(dev).queue_depth - 1):
        assert d2h(dev, stream, host, batch.bufs[0]) == OK
    assert d2h(dev, stream, host, batch.bufs[0]) == lib.PQC_ERR_BUSY
    assert batch.launch(stream) == lib.PQC_ERR_BUSY

    clear_faults(dev)
    assert sync(dev, stream) == OK
    assert batch.launch(stream) == OK
    assert sync(dev, stream) == OK


# ---- Fault injection ----------------------------------------------------------


@pytest.mark.timeout(30)
def test_injected_failures_fail_every_lane_once(dev, stream):
    n, seeds = 5, os.urandom(64 * 5)
    assert lib.pqc_dev_inject_fault(dev, lib.PQC_DEV_FAULT_FAIL, 2, 0) == OK

    for _ in range(2):
        batch = Launch(dev, lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, 2, n)
        batch.queue(stream, [seeds])
        assert sync(dev, stream) == lib.PQC_ERR_DEVICE
        assert batch.statuses() == [lib.PQC_ERR_DEVICE] * n
        assert batch.output(0, 0) == bytes(batch.sizes[1])
        assert sync(dev, stream) == OK

    batch = Launch(dev, lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, 2, n)
    batch.queue(stream, [seeds])
    assert sync(dev, stream) == OK
    assert batch.output(0, 0) == single_keygen(2, seeds[:64])[0]
    assert info(dev).faults == 2


@pytest.mark.timeout(30)
def test_query_reports_a_failure_once(dev, stream):
    batch = Launch(dev, lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, 2, 1)
    assert lib.pqc_dev_inject_fault(dev, lib.PQC_DEV_FAULT_FAIL, 1, 0) == OK
    batch.queue(stream, [bytes(64)])

    status = lib.pqc_dev_stream_query(dev, stream)
    while status == lib.PQC_ERR_BUSY:
        time.sleep(0.001)
        status = lib.pqc_dev_stream_query(dev, stream)
    assert status == lib.PQC_ERR_DEVICE
    assert lib.pqc_dev_stream_query(dev, stream) == OK
    assert batch.statuses() == [lib.PQC_ERR_DEVICE]


def test_clearing_faults_cancels_pending_ones(dev, stream):
    assert lib.pqc_dev_inject_fault(dev, lib.PQC_DEV_FAULT_FAIL, 3, 0) == OK
    assert lib.pqc_dev_inject_fault(dev, lib.PQC_DEV_FAULT_STALL, 3, 10) == OK
    clear_faults(dev)
    batch = Launch(dev, lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, 4, 2)
    batch.queue(stream, [bytes(128)])
    assert sync(dev, stream) == OK
    assert batch.statuses() == [OK, OK]
    assert lib.pqc_dev_inject_fault(dev, 3, 1, 0) == BAD


@pytest.mark.timeout(30)
def test_an_empty_failed_launch_still_reports(dev, stream):
    assert lib.pqc_dev_inject_fault(dev, lib.PQC_DEV_FAULT_FAIL, 1, 0) == OK
    null = ffi.NULL
    assert lib.pqc_dev_launch(dev, stream, 1, 2, 0, null, 3, null) == OK
    assert sync(dev, stream) == lib.PQC_ERR_DEVICE


# ---- Lifetimes -----------------------------------------------------------------


@pytest.mark.timeout(30)
def test_freeing_while_queued_defers_the_release(dev):
    seeds = os.urandom(64 * 4)
    stream = new_stream(dev)
    batch = Launch(dev, lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, 3, 4)
    stall_next(dev)
    batch.queue(stream, [seeds])

    for buf in [*batch.bufs, batch.status]:
        assert lib.pqc_dev_free(dev, buf) == OK
        assert lib.pqc_dev_buffer_size(dev, buf, ffi.new("size_t *")) != OK
    assert info(dev).mem_used > 0
    clear_faults(dev)
    assert sync(dev, stream) == OK

    assert batch.output(1, 3) == single_keygen(3, seeds[192:])[1]
    assert info(dev).mem_used == 0


@pytest.mark.timeout(30)
def test_close_waits_for_queued_work_and_cuts_stalls():
    handle = open_device(threads=2)
    seeds = os.urandom(64 * 6)
    stream = new_stream(handle)
    batch = Launch(handle, lib.PQC_DEV_KERNEL_MLKEM_KEYGEN, 4, 6)
    stall_next(handle)
    batch.queue(stream, [seeds])
    assert lib.pqc_dev_stream_destroy(handle, stream) == OK

    assert lib.pqc_dev_close(handle) == OK
    assert batch.statuses() == [OK] * 6
    assert batch.output(0, 5) == single_keygen(4, seeds[320:])[0]


@pytest.mark.timeout(60)
def test_close_racing_other_calls_never_crashes():
    handle = open_device(threads=2)
    start = threading.Barrier(9)
    seen: set[int] = set()

    def hammer() -> None:
        out = ffi.new("pqc_dev_stream **")
        start.wait()
        for _ in range(200):
            rc = lib.pqc_dev_stream_create(handle, out)
            seen.add(rc)
            if rc == OK:
                seen.add(lib.pqc_dev_stream_destroy(handle, out[0]))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    start.wait()
    assert lib.pqc_dev_close(handle) == OK
    for t in threads:
        t.join()
    assert seen <= {OK, BAD}


# ---- Key slots -------------------------------------------------------------------


def load_seed(dev, ps: int, xi: bytes) -> tuple[int, bytes]:
    pk = ffi.new("uint8_t[]", lib.mldsa_pk_bytes(ps))
    slot = ffi.new("uint32_t *")
    assert lib.pqc_dev_key_load_seed(dev, ps, xi, pk, len(pk), slot) == OK
    return slot[0], bytes(pk)


def single_sign_mu(ps: int, sk: bytes, mu: bytes, rnd: bytes) -> bytes:
    sig = ffi.new("uint8_t[]", lib.mldsa_sig_bytes(ps))
    assert lib.mldsa_sign_mu(ps, sig, sk, mu, rnd) == OK
    return bytes(sig)


def sign_launch(dev, stream, ps: int, slots: list[int], mu: bytes, rnd: bytes):
    ids = ffi.new("uint32_t[]", slots)
    batch = Launch(dev, lib.PQC_DEV_KERNEL_MLDSA_SIGN_MU, ps, len(slots))
    batch.queue(stream, [ffi.buffer(ids)[:], mu, rnd])
    assert sync(dev, stream) == OK
    return batch


@pytest.mark.timeout(60)
@pytest.mark.parametrize("params", SIG, ids=SIG_IDS)
def test_key_slots_sign_like_the_single_call(dev, stream, params):
    ps = params.number
    xi = os.urandom(32)
    pk, sk = (
        ffi.new("uint8_t[]", params.pk_bytes),
        ffi.new("uint8_t[]", params.sk_bytes),
    )
    assert lib.mldsa_keygen(ps, pk, sk, xi) == OK
    from_seed, pk_seed = load_seed(dev, ps, xi)
    assert pk_seed == bytes(pk)
    from_sk = ffi.new("uint32_t *")
    assert lib.pqc_dev_key_load_sk(dev, ps, sk, len(sk), from_sk) == OK
    assert info(dev).key_slots_used == 2

    n = 3
    mu, rnd = os.urandom(64 * n), os.urandom(32 * n)
    batch = sign_launch(dev, stream, ps, [from_seed, from_sk[0], from_seed], mu, rnd)
    assert batch.statuses() == [OK] * n
    for i in range(n):
        want = single_sign_mu(
            ps, bytes(sk), mu[64 * i : 64 * i + 64], rnd[32 * i : 32 * i + 32]
        )
        assert batch.output(0, i) == want


@pytest.mark.timeout(30)
def test_freed_and_foreign_slots_fail_their_lanes_only(dev, stream):
    slot44, _ = load_seed(dev, 44, os.urandom(32))
    slot65, _ = load_seed(dev, 65, os.urandom(32))
    assert lib.pqc_dev_key_free(dev, slot44) == OK
    assert lib.pqc_dev_key_free(dev, slot44) == BAD
    assert lib.pqc_dev_key_free(dev, 5000) == BAD

    mu, rnd = os.urandom(64 * 4), bytes(32 * 4)
    batch = sign_launch(dev, stream, 65, [slot44, slot65, 7, 2**32 - 1], mu, rnd)
    invalid = lib.PQC_ERR_INVALID_KEY
    assert batch.statuses() == [invalid, OK, invalid, invalid]
    assert batch.output(0, 0) == bytes(batch.sizes[3])
    assert info(dev).key_slots_used == 1


def test_key_loading_checks_its_arguments(dev):
    slot = ffi.new("uint32_t *")
    pk = ffi.new("uint8_t[]", 1312)
    xi = bytes(32)
    assert lib.pqc_dev_key_load_seed(dev, 43, xi, ffi.NULL, 0, slot) == BAD
    assert lib.pqc_dev_key_load_seed(dev, 44, xi, pk, 1311, slot) == LENGTH
    assert lib.pqc_dev_key_load_seed(dev, 44, xi, ffi.NULL, 5, slot) == BAD
    assert lib.pqc_dev_key_load_seed(dev, 44, xi, ffi.NULL, 0, ffi.NULL) == BAD
    assert lib.pqc_dev_key_load_seed(dev, 44, xi, ffi.NULL, 0, slot) == OK

    sk_bytes = lib.mldsa_sk_bytes(44)
    short = bytes(sk_bytes - 1)
    assert lib.pqc_dev_key_load_sk(dev, 44, short, len(short), slot) == LENGTH
    # An s1 coefficient is eta - c for a 3-bit c (FIPS 204, Algorithm 25):
    # c = 7 gives -5, outside [-2, 2].
    bad_sk = bytes(128) + b"\xff" * (sk_bytes - 128)
    invalid = lib.PQC_ERR_INVALID_KEY
    assert lib.pqc_dev_key_load_sk(dev, 44, bad_sk, sk_bytes, slot) == invalid
    assert info(dev).key_slots_used == 1


@pytest.mark.timeout(60)
def test_key_slots_are_bounded_and_numbers_reused(dev):
    limit = info(dev).max_key_slots
    slots = [load_seed(dev, 44, i.to_bytes(32, "little"))[0] for i in range(limit)]
    assert slots == list(range(limit))

    slot = ffi.new("uint32_t *")
    full = lib.pqc_dev_key_load_seed(dev, 44, bytes(32), ffi.NULL, 0, slot)
    assert full == lib.PQC_ERR_NO_MEMORY
    assert lib.pqc_dev_key_free(dev, 3) == OK
    assert load_seed(dev, 44, bytes(32))[0] == 3


# ---- The C runtime under sanitizers and valgrind ----------------------------------

# Client threads run keygen batches with faults injected and free their
# buffers before the work is done; a signer frees its key slot while the
# batch may be signing with it; the device is closed with a stalled batch
# still queued on a destroyed stream while another thread keeps calling it.
STRESS_HARNESS = r"""
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "mldsa.h"
#include "mlkem.h"
#include "pqc_dev.h"

#define LANES 9
#define ROUNDS 12
#define CLIENTS 6

static pqc_dev *dev;
static int failures;
static pthread_mutex_t failures_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *what, int rc)
{
    pthread_mutex_lock(&failures_lock);
    failures++;
    fprintf(stderr, "%s: %d\n", what, rc);
    pthread_mutex_unlock(&failures_lock);
}

#define EXPECT(call, want)                                                     \
    do {                                                                       \
        int rc_ = (call);                                                      \
        if (rc_ != (want))                                                     \
            fail(#call, rc_);                                                  \
    } while (0)

static pqc_dev_buffer *alloc(size_t size)
{
    pqc_dev_buffer *b = NULL;
    EXPECT(pqc_dev_malloc(dev, size, &b), PQC_OK);
    return b;
}

/* One keygen batch on s; the buffers are freed before the work is done. */
static void keygen_round(pqc_dev_stream *s, unsigned round, uint8_t *ek,
                         int32_t *status)
{
    uint8_t seeds[64 * LANES];
    size_t ekb = mlkem_ek_bytes(2), dkb = mlkem_dk_bytes(2);
    pqc_dev_buffer *b[4] = {alloc(sizeof(seeds)), alloc(LANES * ekb),
                            alloc(LANES * dkb), alloc(4 * LANES)};

    for (size_t i = 0; i < sizeof(seeds); i++) {
        seeds[i] = (uint8_t)(i * 7 + round);
    }
    EXPECT(pqc_dev_memcpy_h2d(dev, s, b[0], 0, seeds, sizeof(seeds)), 0);
    EXPECT(pqc_dev_launch(dev, s, PQC_DEV_KERNEL_MLKEM_KEYGEN, 2, LANES, b, 3,
                          b[3]),
           0);
    EXPECT(pqc_dev_memcpy_d2h(dev, s, ek, b[1], 0, LANES * ekb), 0);
    EXPECT(pqc_dev_memcpy_d2h(dev, s, status, b[3], 0, 4 * LANES), 0);
    for (int i = 0; i < 4; i++) {
        EXPECT(pqc_dev_free(dev, b[i]), PQC_OK);
    }
    /* seeds is on this stack frame: wait before it goes. */
    int rc = pqc_dev_stream_synchronize(dev, s, PQC_DEV_WAIT_FOREVER);
    if (rc != PQC_OK && rc != PQC_ERR_DEVICE) {
        fail("synchronize", rc);
    }
}

static void *client(void *arg)
{
    static uint8_t ek[CLIENTS][LANES * 800];
    static int32_t status[CLIENTS][LANES];
    unsigned id = (unsigned)(size_t)arg;
    pqc_dev_stream *s = NULL;

    EXPECT(pqc_dev_stream_create(dev, &s), PQC_OK);
    for (unsigned r = 0; r < ROUNDS; r++) {
        keygen_round(s, r, ek[id], status[id]);
    }
    EXPECT(pqc_dev_stream_destroy(dev, s), PQC_OK);
    return NULL;
}

static void *signer(void *arg)
{
    uint8_t xi[32] = {1}, mu[64 * LANES] = {2}, rnd[32 * LANES] = {0};
    uint8_t sig[LANES * 4627];
    int32_t status[LANES];
    uint32_t slot = 0, slots[LANES];
    pqc_dev_stream *s = NULL;
    pqc_dev_buffer *b[5];
    (void)arg;

    EXPECT(pqc_dev_stream_create(dev, &s), PQC_OK);
    for (int r = 0; r < 4; r++) {
        EXPECT(pqc_dev_key_load_seed(dev, 87, xi, NULL, 0, &slot), PQC_OK);
        for (int i = 0; i < LANES; i++) {
            slots[i] = slot;
        }
        b[0] = alloc(sizeof(slots));
        b[1] = alloc(sizeof(mu));
        b[2] = alloc(sizeof(rnd));
        b[3] = alloc(sizeof(sig));
        b[4] = alloc(sizeof(status));
        EXPECT(pqc_dev_memcpy_h2d(dev, s, b[0], 0, slots, sizeof(slots)), 0);
        EXPECT(pqc_dev_memcpy_h2d(dev, s, b[1], 0, mu, sizeof(mu)), 0);
        EXPECT(pqc_dev_memcpy_h2d(dev, s, b[2], 0, rnd, sizeof(rnd)), 0);
        EXPECT(pqc_dev_launch(dev, s, PQC_DEV_KERNEL_MLDSA_SIGN_MU, 87, LANES,
                              b, 4, b[4]),
               0);
        EXPECT(pqc_dev_memcpy_d2h(dev, s, status, b[4], 0, sizeof(status)), 0);
        /* Free the key while the batch may be signing with it. */
        EXPECT(pqc_dev_key_free(dev, slot), PQC_OK);
        for (int i = 0; i < 5; i++) {
            EXPECT(pqc_dev_free(dev, b[i]), PQC_OK);
        }
        int rc = pqc_dev_stream_synchronize(dev, s, PQC_DEV_WAIT_FOREVER);
        if (rc != PQC_OK && rc != PQC_ERR_DEVICE) {
            fail("sign synchronize", rc);
        }
        for (int i = 0; i < LANES; i++) {
            if (status[i] != PQC_OK && status[i] != PQC_ERR_INVALID_KEY &&
                status[i] != PQC_ERR_DEVICE) {
                fail("sign lane", status[i]);
            }
        }
    }
    EXPECT(pqc_dev_stream_destroy(dev, s), PQC_OK);
    return NULL;
}

static void *poker(void *arg)
{
    pqc_dev *target = arg;
    pqc_dev_info info;

    for (int i = 0; i < 2000; i++) {
        int rc = pqc_dev_get_info(target, &info);
        if (rc != PQC_OK && rc != PQC_ERR_INVALID_ARG) {
            fail("poke", rc);
        }
    }
    return NULL;
}

/* Leave a stalled batch queued on a destroyed stream; close drains it. */
static void close_with_work_queued(void)
{
    static uint8_t ek[LANES * 800];
    static int32_t status[LANES];
    pqc_dev_stream *s = NULL;
    pthread_t t;

    EXPECT(pqc_dev_inject_fault(dev, PQC_DEV_FAULT_STALL, 1, 600000), 0);
    EXPECT(pqc_dev_stream_create(dev, &s), PQC_OK);
    pqc_dev_buffer *b[4] = {alloc(64 * LANES), alloc(LANES * 800),
                            alloc(LANES * 1632), alloc(4 * LANES)};
    EXPECT(pqc_dev_launch(dev, s, PQC_DEV_KERNEL_MLKEM_KEYGEN, 2, LANES, b, 3,
                          b[3]),
           0);
    EXPECT(pqc_dev_memcpy_d2h(dev, s, ek, b[1], 0, sizeof(ek)), 0);
    EXPECT(pqc_dev_memcpy_d2h(dev, s, status, b[3], 0, sizeof(status)), 0);
    EXPECT(pqc_dev_stream_destroy(dev, s), PQC_OK);
    alloc(100); /* left for close to free */

    pthread_create(&t, NULL, poker, dev);
    EXPECT(pqc_dev_close(dev), PQC_OK);
    pthread_join(t, NULL);
    for (int i = 0; i < LANES; i++) {
        EXPECT(status[i], PQC_OK);
    }
}

int main(void)
{
    pthread_t t[CLIENTS + 1];

    EXPECT(pqc_dev_open(0, 3, &dev), PQC_OK);
    EXPECT(pqc_dev_inject_fault(dev, PQC_DEV_FAULT_FAIL, 3, 0), 0);
    EXPECT(pqc_dev_inject_fault(dev, PQC_DEV_FAULT_STALL, 4, 5), 0);
    for (size_t i = 0; i < CLIENTS; i++) {
        pthread_create(&t[i], NULL, client, (void *)i);
    }
    pthread_create(&t[CLIENTS], NULL, signer, NULL);
    for (size_t i = 0; i <= CLIENTS; i++) {
        pthread_join(t[i], NULL);
    }
    close_with_work_queued();
    return failures != 0;
}
"""

ROOT = Path(__file__).resolve().parent.parent
SANITIZERS = {
    "thread": ["-fsanitize=thread"],
    "address": ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"],
    "valgrind": [],
}


def build_stress(tmp_path: Path, flags: list[str]) -> Path:
    cc = shutil.which("gcc")
    if cc is None:
        pytest.skip("gcc is needed to build the stress harness.")
    sources = sorted((ROOT / "kernels" / "ref").glob("*.c"))
    sources += sorted((ROOT / "kernels" / "host").glob("*.c"))
    harness, program = tmp_path / "stress.c", tmp_path / "stress"
    harness.write_text(STRESS_HARNESS)
    command = [
        cc, "-O1", "-g", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread",
        *flags, "-I", str(ROOT / "kernels" / "include"),
        "-I", str(ROOT / "kernels" / "ref"), *map(str, sources), str(harness),
        "-o", str(program),
    ]  # fmt: skip
    built = subprocess.run(command, capture_output=True, text=True, check=False)
    if built.returncode != 0 and flags and "cannot find" in built.stderr:
        pytest.skip(f"The {flags[0]} runtime library is not installed.")
    assert built.returncode == 0, built.stderr
    return program


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("tool", list(SANITIZERS))
def test_runtime_is_clean_under_sanitizers(tmp_path, tool):
    program = build_stress(tmp_path, SANITIZERS[tool])
    command = [str(program)]
    if tool == "valgrind":
        valgrind = shutil.which("valgrind")
        if valgrind is None:
            pytest.skip("valgrind is needed for the leak check.")
        leaks = ["--leak-check=full", "--show-leak-kinds=all"]
        leaks += ["--errors-for-leak-kinds=all", "--error-exitcode=99"]
        command = [valgrind, "-q", *leaks, *command]

    run = subprocess.run(command, capture_output=True, text=True, check=False)
    if "unexpected memory mapping" in run.stderr:
        pytest.skip("ThreadSanitizer cannot run with this kernel's ASLR.")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
