"""The device backend: our C kernels behind the device runtime, via cffi.

Each batch goes to the device in one call (``bindings.runtime.Device.run``):
inputs are packed into contiguous records, the kernel runs over all lanes
on the device's worker threads, and per-lane statuses come back with the
outputs. Lanes whose inputs have the wrong shape are refused here and never
reach the device, so one bad lane cannot disturb the others.

The kernels are deterministic functions of their inputs: this backend
honours caller-given encapsulation coins and signing ``rnd``, and draws them
from the OS CSPRNG where a lane leaves them out. ML-DSA signing keys live on
the device in key slots, expanded once; a signing lane names a slot, and
the message representative mu (FIPS 204, Algorithm 7, step 6) is computed on
the host from the slot's tr, so only 64 bytes per lane travel.

A batch that fails or outlasts ``PQC_DEVICE_TIMEOUT_MS`` raises
``DeviceError`` (a ``BackendUnavailable``): the engine re-runs it on the CPU.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from engine import params as P
from engine.backends.base import Backend, check_bytes
from engine.config import EngineConfig
from engine.errors import BackendUnavailable, InvalidInput
from engine.ops import (
    SIG_MODES,
    KemEncapsOut,
    KemKeyPair,
    Kind,
    OpKey,
    SigKeyPair,
    normalise_lane,
)

logger = logging.getLogger(__name__)

# What PQC_KERNEL_IMPL may say (kernels/dispatch.h); the kernels read it.
KERNEL_IMPL_CAPS = frozenset({"auto", "", "ref", "avx2", "avx512"})
_TR_BYTES = 64  # tr = H(pk, 64), FIPS 204 Algorithm 6, step 6
_MU_BYTES = 64


class _Keygen(NamedTuple):
    """How one key-generation kernel is called and what it returns."""

    kernel: str
    what: str  # the seed, named in error messages
    seed_name: str
    seed_bytes: int
    outputs: tuple[str, str]  # public, secret
    pair: type


_KEM_KEYGEN = _Keygen(
    "MLKEM_KEYGEN",
    "The ML-KEM seed",
    "seed",
    P.KEM_SEED_BYTES,
    ("ek", "dk"),
    KemKeyPair,
)
_SIG_KEYGEN = _Keygen(
    "MLDSA_KEYGEN", "The ML-DSA seed", "xi", P.SIG_SEED_BYTES, ("pk", "sk"), SigKeyPair
)


class _Slot:
    __slots__ = ("device_slot", "param", "tr")

    def __init__(self, device_slot: int, param: str, tr: bytes) -> None:
        self.device_slot = device_slot
        self.param = param
        self.tr = tr


class DeviceBackend(Backend):
    """ML-KEM-512/768/1024 and ML-DSA-44/65/87 on the device runtime."""

    name = "device"
    path = "device"
    deterministic = True

    def __init__(self, config: EngineConfig | None = None) -> None:
        config = config or EngineConfig()
        if config.device != "host":
            raise BackendUnavailable(
                f"PQC_DEVICE={config.device!r} names no device runtime built here; "
                "the built runtime is 'host'."
            )
        try:
            from bindings import runtime
        except ImportError as exc:
            raise BackendUnavailable(str(exc)) from exc

        self._rt = runtime
        self._timeout_ms = config.device_timeout_ms
        self._device = runtime.Device(config.device_id, config.device_threads)
        self._info = self._device.info()
        cap = os.environ.get("PQC_KERNEL_IMPL", "auto")
        if cap not in KERNEL_IMPL_CAPS:
            logger.warning(
                "PQC_KERNEL_IMPL=%r is not one of %s; the best the CPU has is used.",
                cap,
                ", ".join(sorted(KERNEL_IMPL_CAPS - {""})),
            )
        logger.info(
            "Device runtime %s opened: kernels %s, %d worker threads.",
            self._info.name,
            self._info.implementation,
            self._info.threads,
        )
        lib = runtime.lib
        # Statuses that concern one lane's input; any other is a device fault.
        self._lane_statuses = {
            lib.PQC_ERR_INVALID_ARG,
            lib.PQC_ERR_INVALID_LENGTH,
            lib.PQC_ERR_INVALID_KEY,
            lib.PQC_ERR_INVALID_SIGNATURE,
            lib.PQC_ERR_INVALID_CONTEXT,
        }
        self._slots: dict[int, _Slot] = {}
        self._lock = threading.Lock()
        caps = {OpKey(k, p) for p in P.KEM_PARAMS for k in Kind if k.is_kem}
        caps |= {OpKey(k, p) for p in P.SIG_PARAMS for k in Kind if not k.is_kem}
        self._caps = frozenset(caps)

    @property
    def device(self):
        """The runtime's ``Device`` (fault injection in tests goes through it)."""
        return self._device

    def capabilities(self) -> frozenset[OpKey]:
        return self._caps

    def describe(self) -> dict[str, object]:
        info = self._info
        return {
            "name": self.name,
            "path": self.path,
            "runtime": info.name,
            "implementation": info.implementation,
            "device_id": info.device_id,
            "threads": info.threads,
        }

    def close(self) -> None:
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
        for slot in slots:
            self._free(slot.device_slot)
        self._device.close()

    # -- key slots ---------------------------------------------------------

    def load_signing_key(self, slot: int, param: str, seed: bytes) -> bytes:
        spec = P.sig_params(param)
        key = check_bytes("The ML-DSA key", seed)
        if len(key) == P.SIG_SEED_BYTES:
            device_slot, pk = self._device.load_key_seed(param, key)
            tr = _tr(pk)
        elif len(key) == spec.sk_bytes:
            device_slot = self._load_sk(param, key)
            pk, tr = b"", key[64 : 64 + _TR_BYTES]  # sk = rho || K || tr || ...
        else:
            raise InvalidInput(
                f"An {param} key must be a 32-byte seed or a {spec.sk_bytes}-byte "
                f"secret key, not {len(key)} bytes."
            )
        with self._lock:
            old = self._slots.pop(slot, None)
            self._slots[slot] = _Slot(device_slot, param, tr)
        if old is not None:
            self._free(old.device_slot)
        return pk

    def _load_sk(self, param: str, sk: bytes) -> int:
        try:
            return self._device.load_key_sk(param, sk)
        except self._rt.DeviceError as exc:
            if exc.status == self._rt.lib.PQC_ERR_INVALID_KEY:
                raise InvalidInput("The ML-DSA secret key is malformed.") from None
            raise

    def drop_signing_key(self, slot: int) -> None:
        with self._lock:
            old = self._slots.pop(slot, None)
        if old is not None:
            self._free(old.device_slot)

    def _free(self, device_slot: int) -> None:
        # A closed or lost device has already wiped its slots.
        with contextlib.suppress(self._rt.DeviceError):
            self._device.free_key(device_slot)

    # -- batches -------------------------------------------------------------

    def run_batch(self, key: OpKey, lanes: Sequence[tuple]) -> list[object]:
        if key not in self._caps:
            raise BackendUnavailable(f"The device does not serve {key}.")
        handler = {
            Kind.KEM_KEYGEN: self._kem_keygen,
            Kind.KEM_ENCAPS: self._kem_encaps,
            Kind.KEM_DECAPS: self._kem_decaps,
            Kind.SIG_KEYGEN: self._sig_keygen,
            Kind.SIG_SIGN: self._sig_sign,
            Kind.SIG_VERIFY: self._sig_verify,
        }[key.kind]
        results: list[object] = [None] * len(lanes)
        clean: list[tuple] = []
        for i, lane in enumerate(lanes):
            try:
                clean.append(normalise_lane(lane))
            except TypeError as exc:
                # A placeholder the checks refuse; the lane keeps its own error.
                clean.append(lane)
                results[i] = InvalidInput(str(exc))
        handler(key.param, clean, results)
        return results

    def _launch(
        self, kernel_name: str, param: str, n: int, inputs: dict[str, bytes]
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        kernel = self._rt.Kernel[kernel_name]
        return self._device.run(kernel, param, n, inputs, self._timeout_ms)

    def _kem_keygen(self, param: str, lanes: Sequence[tuple], out: list) -> None:
        self._keygen(_KEM_KEYGEN, P.kem_params(param).ek_bytes, param, lanes, out)

    def _kem_encaps(self, param: str, lanes: Sequence[tuple], out: list) -> None:
        spec = P.kem_params(param)

        def check(lane: tuple) -> None:
            _bytes("The encapsulation key", lane.ek, spec.ek_bytes)
            if lane.coins is not None:
                _bytes("The encapsulation coins", lane.coins, P.KEM_COINS_BYTES)

        def quick(lane: tuple) -> bool:
            coins = lane.coins
            return _is_bytes(lane.ek, spec.ek_bytes) and (
                coins is None or _is_bytes(coins, P.KEM_COINS_BYTES)
            )

        good = _accept(lanes, out, check, quick)
        if not good:
            return
        coins = _coins(lanes, good, "coins", P.KEM_COINS_BYTES)
        eks = b"".join(lanes[i].ek for i in good)
        inputs = {"ek": eks, "m": coins}
        res, status = self._launch("MLKEM_ENCAPS", param, len(good), inputs)
        cts, sss = _records(res["ct"]), _records(res["ss"])
        for j, (i, code) in enumerate(zip(good, status.tolist(), strict=True)):
            out[i] = KemEncapsOut(cts[j], sss[j]) if code == 0 else self._lane(code)

    def _kem_decaps(self, param: str, lanes: Sequence[tuple], out: list) -> None:
        spec = P.kem_params(param)

        def check(lane: tuple) -> None:
            _bytes("The ciphertext", lane.ct, spec.ct_bytes)
            if len(_bytes("The decapsulation key", lane.dk)) not in (
                spec.seed_bytes,
                spec.dk_bytes,
            ):
                raise InvalidInput(
                    f"The decapsulation key must be a {spec.seed_bytes}-byte seed or "
                    f"{spec.dk_bytes} bytes long, but it is {len(lane.dk)} bytes."
                )

        good = _accept(lanes, out, check)
        seeded = [i for i in good if len(lanes[i].dk) == spec.seed_bytes]
        expanded = [i for i in good if len(lanes[i].dk) == spec.dk_bytes]
        for kernel, key_name, group in (
            ("MLKEM_DECAPS_SEED", "seed", seeded),
            ("MLKEM_DECAPS", "dk", expanded),
        ):
            if not group:
                continue
            inputs = {
                "ct": b"".join(lanes[i].ct for i in group),
                key_name: b"".join(lanes[i].dk for i in group),
            }
            res, status = self._launch(kernel, param, len(group), inputs)
            sss = _records(res["ss"])
            for j, (i, code) in enumerate(zip(group, status.tolist(), strict=True)):
                out[i] = sss[j] if code == 0 else self._lane(code)

    def _sig_keygen(self, param: str, lanes: Sequence[tuple], out: list) -> None:
        self._keygen(_SIG_KEYGEN, P.sig_params(param).pk_bytes, param, lanes, out)

    def _keygen(
        self,
        spec: _Keygen,
        public_bytes: int,
        param: str,
        lanes: Sequence[tuple],
        out: list,
    ) -> None:
        """Key pairs from seeds (FIPS 203 Algorithm 16, FIPS 204 Algorithm 6)."""
        good = _accept(
            lanes,
            out,
            lambda lane: _bytes(spec.what, lane.seed, spec.seed_bytes),
            lambda lane: _is_bytes(lane.seed, spec.seed_bytes),
        )
        if not good:
            return
        seeds = {spec.seed_name: b"".join(lanes[i].seed for i in good)}
        res, status = self._launch(spec.kernel, param, len(good), seeds)
        public_name, secret_name = spec.outputs
        assert res[public_name].shape[1] == public_bytes
        publics, secrets = _records(res[public_name]), _records(res[secret_name])
        for j, (i, code) in enumerate(zip(good, status.tolist(), strict=True)):
            out[i] = (
                spec.pair(publics[j], lanes[i].seed, secrets[j])
                if code == 0
                else self._lane(code)
            )

    def _sig_sign(self, param: str, lanes: Sequence[tuple], out: list) -> None:
        with self._lock:
            slots = dict(self._slots)
        mus: dict[int, bytes] = {}

        def check(lane: tuple) -> None:
            slot = slots.get(lane.slot)
            if slot is None or slot.param != param:
                raise InvalidInput(
                    f"No {param} signing key is loaded in slot {lane.slot}."
                )
            if lane.rnd is not None:
                _bytes("The signing rnd", lane.rnd, P.SIG_RND_BYTES)

        good = _accept(lanes, out, check)
        for i in list(good):
            try:
                mus[i] = _mu(slots[lanes[i].slot].tr, lanes[i])
            except (InvalidInput, TypeError) as exc:
                out[i] = (
                    exc if isinstance(exc, InvalidInput) else InvalidInput(str(exc))
                )
                good.remove(i)
        if not good:
            return
        inputs = {
            "slot": np.array([slots[lanes[i].slot].device_slot for i in good], "<u4"),
            "mu": b"".join(mus[i] for i in good),
            "rnd": _coins(lanes, good, "rnd", P.SIG_RND_BYTES),
        }
        res, status = self._launch("MLDSA_SIGN_MU", param, len(good), inputs)
        sigs = _records(res["sig"])
        for j, (i, code) in enumerate(zip(good, status.tolist(), strict=True)):
            out[i] = sigs[j] if code == 0 else self._lane(code)

    def _sig_verify(self, param: str, lanes: Sequence[tuple], out: list) -> None:
        spec = P.sig_params(param)
        mus: dict[int, bytes] = {}

        def check(lane: tuple) -> None:
            pk = _bytes("The ML-DSA public key", lane.pk, spec.pk_bytes)
            _bytes("The signature", lane.signature)
            tr = _tr(pk)
            mus[id(lane)] = _mu(tr, lane)

        good = _accept(lanes, out, check)
        # A signature of the wrong length cannot verify (FIPS 204, Alg 8).
        for i in [i for i in good if len(lanes[i].signature) != spec.sig_bytes]:
            out[i] = False
            good.remove(i)
        if not good:
            return
        inputs = {
            "pk": b"".join(lanes[i].pk for i in good),
            "mu": b"".join(mus[id(lanes[i])] for i in good),
            "sig": b"".join(lanes[i].signature for i in good),
        }
        _, status = self._launch("MLDSA_VERIFY_MU", param, len(good), inputs)
        invalid = self._rt.lib.PQC_ERR_INVALID_SIGNATURE
        for i, code in zip(good, status.tolist(), strict=True):
            out[i] = (
                True if code == 0 else False if code == invalid else self._lane(code)
            )

    def _lane(self, code: int) -> InvalidInput | None:
        """None for success; the lane's refusal; or raise for a device fault."""
        if code == 0:
            return None
        if code in self._lane_statuses:
            return InvalidInput(
                f"The device refused the input: {self._rt.status_message(code)}"
            )
        raise self._rt.DeviceError(code, "A lane of the batch")


@functools.lru_cache(maxsize=1024)
def _tr(pk: bytes) -> bytes:
    """tr = H(pk, 64) (FIPS 204, Algorithm 8, step 6), for public keys only.

    Verifiers see few distinct keys (a client checks a handful of pinned
    server keys), so hashing each 2 KB key once saves work on every lane.
    """
    return hashlib.shake_256(pk).digest(_TR_BYTES)


def _records(array: np.ndarray) -> list[bytes]:
    """The rows of an (n, size) output as bytes: one copy out, then slices."""
    size = array.shape[1]
    whole = array.tobytes()
    return [whole[k : k + size] for k in range(0, len(whole), size)]


def _accept(lanes: Sequence[tuple], out: list, check, quick=None) -> list[int]:
    """Indices of lanes that pass ``check``; the others get their error.

    ``quick``, when given, is a cheaper test that a well-formed lane passes;
    only the lanes it rejects go through ``check`` for their error.
    """
    good: list[int] = []
    for i, lane in enumerate(lanes):
        if out[i] is not None:  # already refused by run_batch
            continue
        if quick is not None and quick(lane):
            good.append(i)
            continue
        try:
            check(lane)
        except (InvalidInput, TypeError) as exc:
            out[i] = exc if isinstance(exc, InvalidInput) else InvalidInput(str(exc))
        else:
            good.append(i)
    return good


def _bytes(what: str, value: object, expected: int | None = None) -> bytes:
    return check_bytes(what, value, expected)


def _is_bytes(value: object, size: int) -> bool:
    return type(value) is bytes and len(value) == size


def _coins(lanes: Sequence[tuple], good: list[int], field: str, size: int) -> bytes:
    """The lanes' ``field`` laid end to end, fresh randomness where it is None.

    One call to the OS CSPRNG serves every lane that left it out.
    """
    given = [getattr(lanes[i], field) for i in good]
    missing = given.count(None)
    if missing == 0:
        return b"".join(given)
    if missing == len(given):
        return os.urandom(size * missing)
    fresh = os.urandom(size * missing)
    parts, k = [], 0
    for value in given:
        if value is None:
            value, k = fresh[k : k + size], k + size
        parts.append(value)
    return b"".join(parts)


def _mu(tr: bytes, lane: tuple) -> bytes:
    """mu = H(tr || M', 64) for the lane's mode (FIPS 204, Algorithms 2 and 7)."""
    if lane.mode not in SIG_MODES:
        raise InvalidInput(f"{lane.mode!r} is not an ML-DSA signing mode.")
    message = _bytes("The message", lane.message)
    if lane.mode == "mu":
        return _bytes("mu", message, _MU_BYTES)
    if lane.mode == "internal":
        mprime = message
    else:
        context = _bytes("The context", lane.context)
        if len(context) > P.SIG_MAX_CONTEXT_BYTES:
            raise InvalidInput(
                f"The context must be at most {P.SIG_MAX_CONTEXT_BYTES} bytes long, "
                f"but it is {len(context)} bytes."
            )
        # Algorithm 2, step 10: M' = IntegerToBytes(0, 1) || |ctx| || ctx || M
        mprime = b"\x00" + bytes([len(context)]) + context + message
    return hashlib.shake_256(tr + mprime).digest(_MU_BYTES)
