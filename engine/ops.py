"""The operation model: what a caller asks of the engine, lane by lane.

An operation is (kind, parameter set, inputs). The inputs of one lane are a
small named tuple; a batch is a list of them, all of one kind and parameter
set. Randomness (seeds, coins, rnd) is drawn by the caller or by the engine
from the OS CSPRNG, so a backend is a deterministic function of its lanes
wherever the underlying library lets it be.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class Kind(enum.StrEnum):
    """The six operation kinds of design.md."""

    KEM_KEYGEN = "kem_keygen"
    KEM_ENCAPS = "kem_encaps"
    KEM_DECAPS = "kem_decaps"
    SIG_KEYGEN = "sig_keygen"
    SIG_SIGN = "sig_sign"
    SIG_VERIFY = "sig_verify"

    @property
    def is_kem(self) -> bool:
        return self.value.startswith("kem_")


class KemKeygenIn(NamedTuple):
    seed: bytes  # d || z, 64 bytes (FIPS 203 section 7.1)


class KemKeyPair(NamedTuple):
    ek: bytes  # encapsulation key
    dk_seed: bytes  # the 64-byte seed form of the decapsulation key
    dk: bytes | None = None  # the expanded dk, from backends that make it


class KemEncapsIn(NamedTuple):
    ek: bytes
    coins: bytes | None = None  # m, 32 bytes; None lets the backend draw it


class KemEncapsOut(NamedTuple):
    ct: bytes
    ss: bytes


class KemDecapsIn(NamedTuple):
    dk: bytes  # the 64-byte seed form, or the expanded FIPS 203 dk
    ct: bytes


class SigKeygenIn(NamedTuple):
    seed: bytes  # xi, 32 bytes (FIPS 204 Algorithm 1)


class SigKeyPair(NamedTuple):
    pk: bytes
    sk_seed: bytes
    sk: bytes | None = None  # the expanded sk, from backends that make it


# What a signing or verifying lane's ``message`` is (FIPS 204):
#   "pure":     M, signed as ML-DSA.Sign with ``context`` (Algorithm 2)
#   "internal": M' itself, for Sign_internal (Algorithm 7); no context
#   "mu":       the 64-byte message representative mu; no context
SIG_MODES = ("pure", "internal", "mu")


class SigSignIn(NamedTuple):
    slot: int  # a key slot from Engine.load_signing_key
    message: bytes
    context: bytes = b""
    rnd: bytes | None = None  # None: hedged with fresh randomness
    mode: str = "pure"


class SigVerifyIn(NamedTuple):
    pk: bytes
    message: bytes
    signature: bytes
    context: bytes = b""
    mode: str = "pure"


LaneInput = (
    KemKeygenIn | KemEncapsIn | KemDecapsIn | SigKeygenIn | SigSignIn | SigVerifyIn
)

INPUT_TYPES: dict[Kind, type] = {
    Kind.KEM_KEYGEN: KemKeygenIn,
    Kind.KEM_ENCAPS: KemEncapsIn,
    Kind.KEM_DECAPS: KemDecapsIn,
    Kind.SIG_KEYGEN: SigKeygenIn,
    Kind.SIG_SIGN: SigSignIn,
    Kind.SIG_VERIFY: SigVerifyIn,
}


class OpKey(NamedTuple):
    """What a queue is keyed by: one kind at one parameter set."""

    kind: Kind
    param: str

    def __str__(self) -> str:
        return f"{self.kind.value}/{self.param}"


# Lane fields that are not byte strings; every other field must be bytes-like.
_NON_BYTES_FIELDS = {"slot", "mode"}

# Lane types with byte fields only: one whose fields are all bytes or None is
# already normal, which is every lane on the hot path (a backend re-checks
# lanes that the engine normalised when they were submitted).
_BYTES_ONLY_LANES = frozenset(
    t for t in INPUT_TYPES.values() if not _NON_BYTES_FIELDS & set(t._fields)
)
_NORMAL_TYPES = frozenset({bytes, type(None)})


def normalise_lane(lane: tuple) -> tuple:
    """The lane with every bytes-like field as ``bytes``; TypeError otherwise.

    Backends then see only ``bytes``: a caller's odd buffer (a str, a
    strided memoryview) is refused here, for that caller alone, instead of
    failing a batch that other callers share.
    """
    if type(lane) in _BYTES_ONLY_LANES and _NORMAL_TYPES.issuperset(map(type, lane)):
        return lane
    changes = {}
    for name, value in zip(lane._fields, lane, strict=True):
        if name in _NON_BYTES_FIELDS or value is None or type(value) is bytes:
            continue
        if not isinstance(value, bytearray | memoryview):
            raise TypeError(f"{name} must be bytes, not {type(value).__name__}.")
        changes[name] = bytes(value)
    if "slot" in lane._fields and (
        not isinstance(lane.slot, int) or isinstance(lane.slot, bool)
    ):
        raise TypeError(f"slot must be an int, not {type(lane.slot).__name__}.")
    if "mode" in lane._fields and not isinstance(lane.mode, str):
        raise TypeError(f"mode must be a str, not {type(lane.mode).__name__}.")
    return lane._replace(**changes) if changes else lane
