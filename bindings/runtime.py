"""The device runtime (kernels/include/pqc_dev.h) as Python objects.

``Device`` opens a device and owns everything made from it: ``Stream``
(an ordered queue of copies and launches), ``Buffer`` (device memory) and
ML-DSA key slots. ``Device.run`` is the one call the engine needs: it moves
a whole batch to the device, launches the kernel, copies the results back
and waits, on a stream from a small pool, so many Python threads can run
batches at once. Batches travel as whole buffers (``bytes`` or numpy
arrays, through ``ffi.from_buffer``), never lane by lane, and every C call
releases the GIL while it runs or waits.

A failing C call raises ``DeviceError`` (a ``BackendUnavailable``, so the
engine falls back to a CPU backend) carrying the C status and its message.
Wrong Python types are ``TypeError``; wrong sizes are ``ValueError``.

Lifetimes. Copies are asynchronous, so the host memory they name must
outlive them: a ``Stream`` keeps a reference to every array it was handed
until it has seen the stream idle. A stream that times out keeps its arrays
while its work finishes in the background; the pool takes it back once it
is idle, and ``Device.close`` waits for all work before releasing anything.
A pooled stream keeps its device buffers from one batch to the next, so a
batch allocates nothing on the device once sizes have settled; the runtime
zeroes them when they are outgrown and at ``Device.close``.
"""

from __future__ import annotations

import enum
import functools
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import BackendUnavailable, UnsupportedParameterSet
from engine.params import KEM_PARAMS, SIG_PARAMS

try:
    from bindings._pqc_kernels import ffi, lib
except ImportError as exc:
    raise ImportError(
        "The kernel extension bindings._pqc_kernels is not built; run "
        "`pip install -e .` in the project root."
    ) from exc

__all__ = [
    "Buffer",
    "Device",
    "DeviceError",
    "DeviceInfo",
    "Kernel",
    "KernelLayout",
    "Stream",
    "device_count",
    "kernel_layout",
    "status_message",
]

WAIT_FOREVER = lib.PQC_DEV_WAIT_FOREVER
_INT32_MAX = 2**31 - 1
_UINT32_MAX = 2**32 - 1
DEFAULT_POOL_SIZE = 64
_NOT_IDLE = frozenset((lib.PQC_ERR_TIMEOUT, lib.PQC_ERR_BUSY, lib.PQC_ERR_INVALID_ARG))


def status_message(status: int) -> str:
    """The runtime's sentence for a status code."""
    return ffi.string(lib.pqc_dev_status_message(status)).decode()


class DeviceError(BackendUnavailable):
    """A device runtime call failed; ``status`` is the C status code."""

    def __init__(self, status: int, action: str) -> None:
        super().__init__(f"{action} failed: {status_message(status)}")
        self.status = status


def _check(status: int, action: str) -> None:
    if status != lib.PQC_OK:
        raise DeviceError(status, action)


def device_count() -> int:
    """How many devices the runtime offers."""
    count = ffi.new("uint32_t *")
    _check(lib.pqc_dev_count(count), "Counting devices")
    return count[0]


# ---- Kernels ---------------------------------------------------------------


class Kernel(enum.IntEnum):
    """The kernels of pqc_dev.h; the value is the C kernel number."""

    MLKEM_KEYGEN = lib.PQC_DEV_KERNEL_MLKEM_KEYGEN
    MLKEM_ENCAPS = lib.PQC_DEV_KERNEL_MLKEM_ENCAPS
    MLKEM_DECAPS = lib.PQC_DEV_KERNEL_MLKEM_DECAPS
    MLKEM_DECAPS_SEED = lib.PQC_DEV_KERNEL_MLKEM_DECAPS_SEED
    MLDSA_KEYGEN = lib.PQC_DEV_KERNEL_MLDSA_KEYGEN
    MLDSA_SIGN_MU = lib.PQC_DEV_KERNEL_MLDSA_SIGN_MU
    MLDSA_VERIFY_MU = lib.PQC_DEV_KERNEL_MLDSA_VERIFY_MU

    @property
    def is_kem(self) -> bool:
        return self <= Kernel.MLKEM_DECAPS_SEED


# Argument names in launch order (inputs, outputs); sizes come from C.
_ARG_NAMES: dict[Kernel, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Kernel.MLKEM_KEYGEN: (("seed",), ("ek", "dk")),
    Kernel.MLKEM_ENCAPS: (("ek", "m"), ("ct", "ss")),
    Kernel.MLKEM_DECAPS: (("ct", "dk"), ("ss",)),
    Kernel.MLKEM_DECAPS_SEED: (("ct", "seed"), ("ss",)),
    Kernel.MLDSA_KEYGEN: (("xi",), ("pk", "sk")),
    Kernel.MLDSA_SIGN_MU: (("slot", "mu", "rnd"), ("sig",)),
    Kernel.MLDSA_VERIFY_MU: (("pk", "mu", "sig"), ()),
}


@dataclass(frozen=True)
class KernelLayout:
    """A kernel's arguments for one parameter set: (name, record bytes)."""

    kernel: Kernel
    param: int
    inputs: tuple[tuple[str, int], ...]
    outputs: tuple[tuple[str, int], ...]


def kernel_param(kernel: Kernel, param: str | int) -> int:
    """The C parameter for ``param``: a FIPS name or the C number itself.

    ML-KEM kernels take the rank k ("ML-KEM-768" -> 3), ML-DSA kernels the
    set number ("ML-DSA-65" -> 65).
    """
    if isinstance(param, bool) or not isinstance(param, int | str):
        raise TypeError(f"param must be str or int, not {type(param).__name__}.")
    if isinstance(param, int):
        return param
    if kernel.is_kem and param in KEM_PARAMS:
        return KEM_PARAMS[param].k
    if not kernel.is_kem and param in SIG_PARAMS:
        return SIG_PARAMS[param].number
    raise UnsupportedParameterSet(
        f"The kernel {kernel.name} does not take the parameter set {param!r}."
    )


@functools.cache
def _layout(kernel: Kernel, param: int) -> KernelLayout:
    sizes = ffi.new("size_t[]", lib.PQC_DEV_MAX_ARGS)
    n_in, n_out = ffi.new("unsigned *"), ffi.new("unsigned *")
    _check(
        lib.pqc_dev_kernel_layout(kernel, param, sizes, n_in, n_out),
        f"Looking up kernel {kernel.name} with parameter {param}",
    )
    in_names, out_names = _ARG_NAMES[kernel]
    assert (n_in[0], n_out[0]) == (len(in_names), len(out_names))
    records = list(sizes)
    return KernelLayout(
        kernel,
        param,
        tuple(zip(in_names, records[: n_in[0]], strict=True)),
        tuple(zip(out_names, records[n_in[0] : n_in[0] + n_out[0]], strict=True)),
    )


def kernel_layout(kernel: Kernel | int, param: str | int) -> KernelLayout:
    """The argument names and record sizes of ``kernel`` for ``param``."""
    kernel = Kernel(kernel)
    number = kernel_param(kernel, param)
    if not 0 <= number <= _UINT32_MAX:
        raise DeviceError(lib.PQC_ERR_INVALID_ARG, "Looking up the kernel")
    return _layout(kernel, number)


# ---- Device information ------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """What ``pqc_dev_get_info`` reports (see pqc_dev_info in pqc_dev.h)."""

    name: str
    implementation: str
    abi_version: int
    device_id: int
    threads: int
    max_streams: int
    max_buffers: int
    max_key_slots: int
    queue_depth: int
    key_slots_used: int
    mem_limit: int
    mem_used: int
    launches: int
    lanes: int
    faults: int

    @classmethod
    def _from_c(cls, info: Any) -> DeviceInfo:
        numbers = {
            name: int(getattr(info, name))
            for name in cls.__dataclass_fields__
            if name not in ("name", "implementation")
        }
        return cls(
            name=ffi.string(info.name).decode(),
            implementation=ffi.string(info.impl).decode(),
            **numbers,
        )


# ---- Host memory -------------------------------------------------------------


def _readable(data: object) -> Any:
    """A C-contiguous object exposing the bytes of ``data``."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data)
    if isinstance(data, bytes | bytearray | memoryview):
        return data
    raise TypeError(
        f"Host data must be bytes or a numpy array, not {type(data).__name__}."
    )


def _writable(out: object) -> Any:
    if isinstance(out, np.ndarray):
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("The output array must be C-contiguous and writable.")
        return out
    if isinstance(out, bytearray | memoryview):
        return out
    raise TypeError(
        f"Host output must be a numpy array or bytearray, not {type(out).__name__}."
    )


def _nbytes(data: object) -> int:
    return memoryview(data).nbytes  # type: ignore[arg-type]


def _timeout(timeout_ms: int | None) -> int:
    if timeout_ms is None:
        return WAIT_FOREVER
    if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool):
        raise TypeError(f"timeout_ms must be int, not {type(timeout_ms).__name__}.")
    if not 0 <= timeout_ms <= _INT32_MAX:
        raise ValueError(
            f"timeout_ms must be between 0 and {_INT32_MAX}, not {timeout_ms}."
        )
    return timeout_ms


# ---- Buffers and streams -----------------------------------------------------


class Buffer:
    """Device memory of ``size`` bytes; ``free`` zeroes and releases it."""

    def __init__(self, device: Device, handle: Any, size: int) -> None:
        self._device = device
        self._handle = handle
        self.size = size

    @property
    def freed(self) -> bool:
        return self._handle is None

    def handle(self) -> Any:
        if self._handle is None:
            raise DeviceError(lib.PQC_ERR_INVALID_ARG, "Using a freed buffer")
        return self._handle

    def free(self) -> None:
        """Release the buffer (once queued work no longer needs it)."""
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        with self._device._use() as dev:
            _check(lib.pqc_dev_free(dev, handle), "Freeing a buffer")

    def __enter__(self) -> Buffer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.free()


class Stream:
    """An ordered queue of copies and launches on one device.

    One thread at a time should queue on a stream (the pool in
    ``Device.run`` hands each stream to one caller); waiting may happen
    from any thread.
    """

    def __init__(self, device: Device, handle: Any) -> None:
        self._device = device
        self._handle = handle
        self._holds: list[object] = []
        self._scratch: list[Buffer] = []

    # The public methods enter the device once each; Device.run, already
    # inside, calls the underscored ones with the handle it holds.

    def copy_from_host(self, buffer: Buffer, data: object, offset: int = 0) -> None:
        """Queue a copy of ``data`` (bytes or numpy) into ``buffer``."""
        source = _readable(data)
        with self._device._use() as dev:
            self._copy_in(dev, buffer, source, offset)

    def _copy_in(self, dev: Any, buffer: Buffer, source: Any, offset: int) -> None:
        view = ffi.from_buffer("uint8_t[]", source)
        _check(
            lib.pqc_dev_memcpy_h2d(
                dev, self._handle, buffer.handle(), offset, view, len(view)
            ),
            "Queueing a copy to the device",
        )
        self._holds.append((source, view))

    def copy_to_host(self, out: object, buffer: Buffer, offset: int = 0) -> None:
        """Queue a copy from ``buffer`` filling all of ``out``."""
        target = _writable(out)
        with self._device._use() as dev:
            self._copy_out(dev, target, buffer, offset)

    def _copy_out(self, dev: Any, target: Any, buffer: Buffer, offset: int) -> None:
        view = ffi.from_buffer("uint8_t[]", target, require_writable=True)
        _check(
            lib.pqc_dev_memcpy_d2h(
                dev, self._handle, view, buffer.handle(), offset, len(view)
            ),
            "Queueing a copy from the device",
        )
        self._holds.append((target, view))

    def launch(
        self,
        kernel: Kernel | int,
        param: str | int,
        n: int,
        args: Sequence[Buffer],
        status: Buffer,
    ) -> None:
        """Queue ``kernel`` over ``n`` lanes (args in launch order)."""
        layout = kernel_layout(kernel, param)
        with self._device._use() as dev:
            self._launch(dev, layout, n, args, status)

    def _launch(
        self,
        dev: Any,
        layout: KernelLayout,
        n: int,
        args: Sequence[Buffer],
        status: Buffer,
    ) -> None:
        handles = ffi.new("pqc_dev_buffer *[]", [b.handle() for b in args])
        rc = lib.pqc_dev_launch(
            dev,
            self._handle,
            layout.kernel,
            layout.param,
            n,
            handles,
            len(args),
            status.handle(),
        )
        if rc != lib.PQC_OK:
            raise DeviceError(rc, f"Launching {layout.kernel.name}")

    def synchronize(self, timeout_ms: int | None = None) -> None:
        """Wait until the stream is idle; ``None`` waits without limit.

        Raises ``DeviceError`` with status ``PQC_ERR_TIMEOUT`` when the
        work is not done in time (it keeps running), or with the error a
        queued command recorded.
        """
        wait = _timeout(timeout_ms)
        with self._device._use() as dev:
            self._synchronize(dev, wait)

    def _synchronize(self, dev: Any, wait: int) -> None:
        status = lib.pqc_dev_stream_synchronize(dev, self._handle, wait)
        self._release_holds(status)
        _check(status, "Synchronizing the stream")

    def query(self) -> bool:
        """True once the stream is idle (raising any error it recorded)."""
        with self._device._use() as dev:
            status = lib.pqc_dev_stream_query(dev, self._handle)
        if status == lib.PQC_ERR_BUSY:
            return False
        self._release_holds(status)
        _check(status, "Querying the stream")
        return True

    def _release_holds(self, status: int) -> None:
        # Any other status means the stream was found idle (pqc_dev.h).
        if status not in _NOT_IDLE:
            self._holds.clear()

    def _scratch_buffers(self, sizes: Sequence[int]) -> list[Buffer]:
        """Device buffers of at least ``sizes`` bytes, kept for later batches.

        ``Device.run`` reuses them on the stream it holds instead of
        allocating and freeing every buffer of every batch; the stream's
        order keeps one batch's commands off the next batch's bytes. They
        grow to the largest batch seen. Between batches they still hold
        the last batch's records, secrets included, as device memory does;
        ``pqc_dev_free`` zeroes a buffer outgrown here, and
        ``pqc_dev_close`` zeroes the rest.
        """
        scratch = self._scratch
        for i, size in enumerate(sizes):
            if i == len(scratch):
                scratch.append(self._device.malloc(size))
            elif scratch[i].size < size:
                bigger = self._device.malloc(size)
                scratch[i].free()
                scratch[i] = bigger
        return scratch[: len(sizes)]

    def _settled(self) -> bool:
        """Like ``query`` but swallowing errors: for the pool's bookkeeping."""
        try:
            return self.query()
        except DeviceError:
            return True

    def destroy(self) -> None:
        """Destroy the stream; if it is busy, once its work is done."""
        self._device._retire_stream(self)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()


class _StreamPool:
    """Idle streams for ``Device.run``, created on demand up to a limit.

    A stream handed back while still busy (its batch timed out) waits in
    ``draining`` until it is idle; it keeps the batch's host arrays alive
    until then.
    """

    def __init__(self, device: Device, limit: int) -> None:
        self._device = device
        self._limit = limit
        self._made = 0
        self._idle: list[Stream] = []
        self._draining: list[Stream] = []
        self._cond = threading.Condition()

    def acquire(self) -> Stream:
        with self._cond:
            while True:
                self._reap()
                if self._idle:
                    return self._idle.pop()
                if self._made < self._limit:
                    self._made += 1
                    break
                # Draining streams finish on their own: look again shortly.
                self._cond.wait(timeout=0.05 if self._draining else None)
        try:
            return self._device._new_stream(pooled=True)
        except BaseException:
            with self._cond:
                self._made -= 1
                self._cond.notify()
            raise

    def release(self, stream: Stream, idle: bool = False) -> None:
        """Take ``stream`` back; ``idle`` when a synchronize just found it so."""
        settled = idle or stream._settled()
        with self._cond:
            (self._idle if settled else self._draining).append(stream)
            self._cond.notify()

    def _reap(self) -> None:
        still = [s for s in self._draining if not s._settled()]
        self._idle.extend(s for s in self._draining if s not in still)
        self._draining = still

    def clear(self) -> None:
        """Forget every stream (after ``pqc_dev_close`` zeroed their buffers)."""
        with self._cond:
            for stream in self._idle + self._draining:
                stream._scratch.clear()
            self._idle.clear()
            self._draining.clear()
            self._made = 0


# ---- Devices -----------------------------------------------------------------


class Device:
    """An open device of the runtime; a context manager that closes it.

    ``threads`` is the number of worker threads (0: one per online core).
    Every method may be called from any thread.
    """

    def __init__(
        self, device_id: int = 0, threads: int = 0, pool_size: int = DEFAULT_POOL_SIZE
    ) -> None:
        handle = ffi.new("pqc_dev **")
        _check(lib.pqc_dev_open(device_id, threads, handle), "Opening the device")
        self._handle = handle[0]
        self._lock = threading.Condition()
        self._users = 0
        self._closed = False
        self._local = threading.local()
        self._streams: set[Stream] = set()
        self._draining: list[Stream] = []
        self._pool = _StreamPool(self, pool_size)

    # -- lifecycle

    @contextmanager
    def _use(self) -> Iterator[Any]:
        """Yield the C handle, keeping close() out while the caller is inside.

        A thread already inside (run() calling Stream methods) re-enters
        without checking, so a close that started meanwhile cannot strand
        its half-queued batch.
        """
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._lock:
                if self._closed:
                    raise DeviceError(lib.PQC_ERR_INVALID_ARG, "Using a closed device")
                self._users += 1
        self._local.depth = depth + 1
        try:
            yield self._handle
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._lock:
                    self._users -= 1
                    self._lock.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wait for callers and queued work, then release everything."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            while self._users:
                self._lock.wait()
        _check(lib.pqc_dev_close(self._handle), "Closing the device")
        self._pool.clear()
        for stream in self._streams:
            stream._holds.clear()
        self._streams.clear()
        self._draining.clear()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def info(self) -> DeviceInfo:
        info = ffi.new("pqc_dev_info *")
        with self._use() as dev:
            _check(lib.pqc_dev_get_info(dev, info), "Reading device information")
        return DeviceInfo._from_c(info)

    # -- streams and buffers

    def stream(self) -> Stream:
        """A new stream of this device (destroy it, or let close do it)."""
        return self._new_stream(pooled=False)

    def _new_stream(self, pooled: bool) -> Stream:
        handle = ffi.new("pqc_dev_stream **")
        with self._use() as dev:
            self._reap_streams()
            _check(lib.pqc_dev_stream_create(dev, handle), "Creating a stream")
        stream = Stream(self, handle[0])
        if not pooled:
            with self._lock:
                self._streams.add(stream)
        return stream

    def _retire_stream(self, stream: Stream) -> None:
        with self._lock:
            if stream not in self._streams:
                return
            self._streams.discard(stream)
            self._draining.append(stream)
        with self._use():
            self._reap_streams()

    def _reap_streams(self) -> None:
        """Destroy retired streams that are idle; keep busy ones for later."""
        with self._lock:
            candidates, self._draining = self._draining, []
        busy = [s for s in candidates if not s._settled()]
        for stream in candidates:
            if stream not in busy:
                _check(
                    lib.pqc_dev_stream_destroy(self._handle, stream._handle),
                    "Destroying a stream",
                )
        with self._lock:
            self._draining.extend(busy)

    def malloc(self, size: int) -> Buffer:
        """A zeroed device buffer of ``size`` bytes."""
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"size must be a non-negative int, not {size!r}.")
        handle = ffi.new("pqc_dev_buffer **")
        with self._use() as dev:
            _check(lib.pqc_dev_malloc(dev, size, handle), "Allocating device memory")
        return Buffer(self, handle[0], size)

    # -- key slots

    def load_key_seed(self, param: str | int, xi: bytes) -> tuple[int, bytes]:
        """Generate the ML-DSA key of seed ``xi`` into a slot: (slot, pk)."""
        ps = kernel_param(Kernel.MLDSA_KEYGEN, param)
        _need_length("xi", xi, 32)
        pk = ffi.new("uint8_t[]", lib.mldsa_pk_bytes(ps) or 1)
        slot = ffi.new("uint32_t *")
        with self._use() as dev:
            _check(
                lib.pqc_dev_key_load_seed(
                    dev, ps, ffi.from_buffer(xi), pk, len(pk), slot
                ),
                "Loading a signing key",
            )
        return slot[0], ffi.buffer(pk)[:]

    def load_key_sk(self, param: str | int, sk: bytes) -> int:
        """Expand an encoded ML-DSA secret key into a slot; return the slot."""
        ps = kernel_param(Kernel.MLDSA_KEYGEN, param)
        _need_length("sk", sk, lib.mldsa_sk_bytes(ps))
        slot = ffi.new("uint32_t *")
        with self._use() as dev:
            _check(
                lib.pqc_dev_key_load_sk(
                    dev, ps, ffi.from_buffer(sk), _nbytes(sk), slot
                ),
                "Loading a signing key",
            )
        return slot[0]

    def free_key(self, slot: int) -> None:
        """Wipe and release a key slot."""
        if not 0 <= slot <= _UINT32_MAX:
            raise DeviceError(lib.PQC_ERR_INVALID_ARG, "Freeing a key slot")
        with self._use() as dev:
            _check(lib.pqc_dev_key_free(dev, slot), "Freeing a key slot")

    # -- fault injection

    def fail_next(self, count: int = 1) -> None:
        """Make the next ``count`` launches fail with PQC_ERR_DEVICE."""
        self._inject(lib.PQC_DEV_FAULT_FAIL, count, 0)

    def stall_next(self, stall_ms: int, count: int = 1) -> None:
        """Hold the next ``count`` launches back for ``stall_ms`` each."""
        self._inject(lib.PQC_DEV_FAULT_STALL, count, stall_ms)

    def clear_faults(self) -> None:
        self._inject(lib.PQC_DEV_FAULT_NONE, 0, 0)

    def _inject(self, fault: int, count: int, stall_ms: int) -> None:
        for name, value in (("count", count), ("stall_ms", stall_ms)):
            if not 0 <= value <= _UINT32_MAX:
                raise ValueError(f"{name} must fit in 32 bits, not {value}.")
        with self._use() as dev:
            _check(
                lib.pqc_dev_inject_fault(dev, fault, count, stall_ms),
                "Injecting a fault",
            )

    # -- whole batches

    def run(
        self,
        kernel: Kernel | int,
        param: str | int,
        n: int,
        inputs: Mapping[str, object],
        timeout_ms: int | None = None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Run one batch: copy in, launch, copy out, wait.

        ``inputs`` maps each input name of the kernel's layout to ``n``
        records laid end to end (bytes or a numpy array; the ``slot`` input
        of ML-DSA signing may also be a sequence of ints). Returns the
        outputs, each a uint8 array of shape (n, record bytes), and the
        lanes' statuses, an int32 array of shape (n,).
        """
        layout = kernel_layout(kernel, param)
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, not {n!r}.")
        host_in = {
            name: _batch_input(inputs, name, n, size) for name, size in layout.inputs
        }
        outputs = {
            name: np.empty((n, size), dtype=np.uint8) for name, size in layout.outputs
        }
        status = np.empty(n, dtype=np.int32)

        wait = _timeout(timeout_ms)
        with self._use() as dev:
            stream = self._pool.acquire()
            idle = False
            try:
                self._queue_batch(dev, stream, layout, host_in, outputs, status)
                stream._synchronize(dev, wait)
                idle = True
            finally:
                self._pool.release(stream, idle)
        return outputs, status

    def _queue_batch(
        self,
        dev: Any,
        stream: Stream,
        layout: KernelLayout,
        host_in: dict[str, object],
        outputs: dict[str, np.ndarray],
        status: np.ndarray,
    ) -> None:
        n = len(status)
        records = [size for _name, size in layout.inputs + layout.outputs]
        buffers = stream._scratch_buffers([n * size for size in records] + [4 * n])
        for (name, _size), buffer in zip(layout.inputs, buffers, strict=False):
            stream._copy_in(dev, buffer, host_in[name], 0)
        stream._launch(dev, layout, n, buffers[:-1], buffers[-1])

        out_buffers = buffers[len(layout.inputs) : -1]
        for array, buffer in zip(outputs.values(), out_buffers, strict=True):
            stream._copy_out(dev, array, buffer, 0)
        stream._copy_out(dev, status, buffers[-1], 0)


def _need_length(what: str, value: object, expected: int) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}.")
    if _nbytes(value) != expected:
        raise ValueError(
            f"{what} must be {expected} bytes long, but it is {_nbytes(value)} bytes."
        )


def _batch_input(inputs: Mapping[str, object], name: str, n: int, size: int) -> Any:
    """Input ``name`` as one contiguous host object of n records of size bytes."""
    if name not in inputs:
        raise ValueError(f"The input {name!r} is missing.")
    value = inputs[name]
    if name == "slot" and isinstance(value, list | tuple):
        value = np.asarray(value, dtype=np.uint32)
    data = _readable(value)
    if _nbytes(data) != n * size:
        raise ValueError(
            f"The input {name!r} must be {n * size} bytes ({n} records of "
            f"{size}), but it is {_nbytes(data)} bytes."
        )
    return data
