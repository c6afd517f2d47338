"""Run NIST ACVP and Wycheproof ML-KEM / ML-DSA vector files through a backend.

``load_file`` turns one vector file into ``VectorCase`` records, whatever
its format: the format is read from the content (ACVP ``algorithm`` and
``mode``; Wycheproof ``schema`` and the groups' ``type``), never from the
file name. A case is one or more steps, each an ``OpKey``, a lane and what
must come out of it: exact bytes, a verification verdict, a refusal, or
merely no refusal.

``run_files`` decides per backend which cases it can run (``skip_reason``),
groups the steps of the runnable ones by ``OpKey`` into batches of ``batch``
lanes, one ``run_batch`` call each, and tallies the verdicts in a
``Report``. Signing keys are loaded into slots once each and dropped when
their last batch is done.

Rules that decide run or skip, whatever the file:

* a step whose ``OpKey`` the backend does not serve skips its case;
* outputs that depend on caller-given encapsulation coins or signing rnd
  need a ``deterministic`` backend (deterministic signing is rnd = 32 zero
  bytes, FIPS 204 Algorithm 2, so it needs one too);
* a case whose input must be refused runs without coins or rnd, since no
  output is compared, so that every backend can show that it refuses it;
* keys in expanded form (FIPS 203 dk, FIPS 204 sk) and the ``internal``
  and ``mu`` signing modes run only on backends not listed as lacking them
  in ``BACKEND_LIMITS``. A refusal caused by such a limit is a skip, never
  a pass or a failure.

HashML-DSA cases (FIPS 204 Algorithm 4) are run as Sign_internal /
Verify_internal on M' = 0x01 || len(ctx) || ctx || OID || PH(M), formed
here with hashlib; pure ML-DSA cases run in ``pure`` mode, so that backends
without ``internal`` mode can run them too.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from engine import params as P
from engine.backends.base import Backend
from engine.errors import BackendUnavailable, InvalidInput, PqcError
from engine.ops import (
    KemDecapsIn,
    KemEncapsIn,
    KemKeygenIn,
    Kind,
    OpKey,
    SigKeygenIn,
    SigSignIn,
    SigVerifyIn,
)

logger = logging.getLogger(__name__)

BACKEND_NAMES = ("device", "openssl", "liboqs")
ZERO_RND = bytes(P.SIG_RND_BYTES)  # deterministic signing, FIPS 204 Algorithm 2


class VectorFileError(PqcError, ValueError):
    """A file is not a vector file this loader knows, or it is malformed."""


class Need(enum.Enum):
    """What a case needs of a backend beyond serving its ``OpKey``."""

    COINS = "caller-given encapsulation coins"
    RND = "caller-given signing rnd"
    EXPANDED_DK = "expanded decapsulation keys"
    EXPANDED_SK = "expanded signing keys"
    INTERNAL = "internal mode (Sign_internal / Verify_internal, which HashML-DSA uses)"
    MU = "external-mu mode"


# What each CPU backend is known to refuse (engine/backends/openssl.py and
# liboqs.py); a backend not listed here (the device) is expected to take
# everything. COINS and RND follow the backend's ``deterministic`` flag.
BACKEND_LIMITS: dict[str, frozenset[Need]] = {
    "openssl": frozenset({Need.EXPANDED_DK, Need.EXPANDED_SK, Need.INTERNAL}),
    "liboqs": frozenset({Need.EXPANDED_DK, Need.EXPANDED_SK, Need.INTERNAL, Need.MU}),
}


# -- cases -------------------------------------------------------------------


class Expect(NamedTuple):
    """What a step must produce.

    ``outcome`` is "equal" (``fields`` name result attributes, "" for the
    result itself, and their expected bytes; names in ``optional`` are
    compared only where the result has them), "verify" (the verdict must be
    ``verified``; a refusal counts as False), "refused" or "accepted".
    """

    outcome: str
    fields: tuple[tuple[str, bytes], ...] = ()
    verified: bool = False
    optional: frozenset[str] = frozenset()


class SignKey(NamedTuple):
    """A signing key to load into a slot: a 32-byte seed or an expanded sk."""

    param: str
    material: bytes
    public_key: bytes | None = None  # where given, what the load must return


class Step(NamedTuple):
    op: OpKey
    lane: tuple
    expect: Expect
    key: SignKey | None = None  # for SIG_SIGN; the lane's slot is filled in


@dataclass(frozen=True)
class VectorCase:
    """One test case of a vector file, ready to run on any backend."""

    file: str
    group: int
    group_label: str
    test_id: int
    param: str
    steps: tuple[Step, ...]
    needs: frozenset[Need] = frozenset()
    skip: str | None = None  # a FIPS rule leaves nothing to run, on any backend


@dataclass(frozen=True)
class VectorFile:
    path: str
    kind: str  # e.g. "ACVP ML-KEM keyGen", "Wycheproof MLKEMTest"
    cases: tuple[VectorCase, ...]


def equal(*fields: tuple[str, bytes], optional: Iterable[str] = ()) -> Expect:
    return Expect("equal", tuple(fields), optional=frozenset(optional))


def verify(verified: bool) -> Expect:
    return Expect("verify", verified=verified)


REFUSED = Expect("refused")
ACCEPTED = Expect("accepted")


# -- HashML-DSA --------------------------------------------------------------

# FIPS 204 section 5.4.1: the DER OID of each pre-hash function is
# 06 09 60 86 48 01 65 03 04 02 xx; its last byte and PH(M).
_OID_PREFIX = bytes.fromhex("06096086480165030402")
_PREHASH: dict[str, tuple[int, Callable[[bytes], bytes]]] = {
    "SHA2-256": (0x01, lambda m: hashlib.sha256(m).digest()),
    "SHA2-384": (0x02, lambda m: hashlib.sha384(m).digest()),
    "SHA2-512": (0x03, lambda m: hashlib.sha512(m).digest()),
    "SHA2-224": (0x04, lambda m: hashlib.sha224(m).digest()),
    "SHA2-512/224": (0x05, lambda m: hashlib.new("sha512_224", m).digest()),
    "SHA2-512/256": (0x06, lambda m: hashlib.new("sha512_256", m).digest()),
    "SHA3-224": (0x07, lambda m: hashlib.sha3_224(m).digest()),
    "SHA3-256": (0x08, lambda m: hashlib.sha3_256(m).digest()),
    "SHA3-384": (0x09, lambda m: hashlib.sha3_384(m).digest()),
    "SHA3-512": (0x0A, lambda m: hashlib.sha3_512(m).digest()),
    "SHAKE-128": (0x0B, lambda m: hashlib.shake_128(m).digest(32)),
    "SHAKE-256": (0x0C, lambda m: hashlib.shake_256(m).digest(64)),
}


def hash_ml_dsa_message(message: bytes, context: bytes, hash_alg: str) -> bytes:
    """M' of HashML-DSA.Sign / Verify (FIPS 204 Algorithms 4 and 5)."""
    try:
        oid_byte, digest = _PREHASH[hash_alg]
    except KeyError:
        raise VectorFileError(
            f"{hash_alg!r} is not a FIPS 204 pre-hash function; expected one of "
            f"{', '.join(_PREHASH)}."
        ) from None
    if len(context) > P.SIG_MAX_CONTEXT_BYTES:
        raise ValueError(f"The context is {len(context)} bytes; at most 255 fit.")
    prefix = bytes([1, len(context)]) + context
    return prefix + _OID_PREFIX + bytes([oid_byte]) + digest(message)


# -- reading files -----------------------------------------------------------


def load_file(path: str | Path) -> VectorFile:
    """Read one ACVP or Wycheproof vector file into cases."""
    doc = _read_json(Path(path))
    if isinstance(doc, list):  # the ACVP wire form: [version, vector set]
        doc = next((d for d in doc if isinstance(d, dict) and "vsId" in d), None)
    if not isinstance(doc, dict) or not isinstance(doc.get("testGroups"), list):
        raise _unknown_file(path)
    if "schema" in doc:
        return _wycheproof_file(str(path), doc)
    if "mode" in doc and "revision" in doc:
        return _acvp_file(Path(path), doc)
    raise _unknown_file(path)


def _unknown_file(path: str | Path) -> VectorFileError:
    return VectorFileError(
        f"{path} is neither ACVP nor Wycheproof: expected an ACVP vector set "
        "(algorithm, mode, revision, testGroups) or a Wycheproof test file "
        "(algorithm, schema, testGroups)."
    )


def _read_json(path: Path) -> object:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise VectorFileError(f"Cannot read {path}: {exc.strerror}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VectorFileError(f"{path} is not JSON: {exc}.") from None


def _hex(test: dict, name: str) -> bytes:
    value = test.get(name)
    if not isinstance(value, str):
        raise VectorFileError(f"Test {test.get('tcId')} has no hex field {name!r}.")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise VectorFileError(
            f"Field {name!r} of test {test.get('tcId')} is not hex."
        ) from None


def _hex_or_none(test: dict, name: str) -> bytes | None:
    return None if test.get(name) is None else _hex(test, name)


def _hex_or_empty(test: dict, name: str) -> bytes:
    """An optional field such as a context or message: absent means empty."""
    return _hex_or_none(test, name) or b""


class _Group(NamedTuple):
    """Where a case comes from, for its ``VectorCase`` record."""

    file: str
    number: int
    label: str
    param: str

    def case(self, test: dict, *steps: Step, **extra: object) -> VectorCase:
        return VectorCase(
            self.file, self.number, self.label, test["tcId"], self.param,
            tuple(steps), **extra,
        )  # fmt: skip


# -- ACVP --------------------------------------------------------------------


def _acvp_file(path: Path, doc: dict) -> VectorFile:
    algorithm, mode = doc.get("algorithm"), doc.get("mode")
    builder = _ACVP_BUILDERS.get((algorithm, mode))
    if builder is None:
        raise VectorFileError(
            f"{path}: ACVP {algorithm} {mode} is not supported; expected ML-KEM "
            "keyGen or encapDecap, or ML-DSA keyGen, sigGen or sigVer."
        )
    groups = doc["testGroups"]
    if groups and "parameterSet" not in groups[0]:
        raise VectorFileError(
            f"{path} holds ACVP expected results only; pass the prompt.json or "
            "internalProjection.json beside it."
        )
    if _acvp_lacks_outputs(algorithm, mode, groups):
        groups = _acvp_join(path, groups)

    cases = []
    for group in groups:
        label, param = _acvp_label(group), group["parameterSet"]
        where = _Group(str(path), group["tgId"], label, param)
        cases += [builder(where, group, test) for test in group["tests"]]
    return VectorFile(str(path), f"ACVP {algorithm} {mode}", tuple(cases))


def _acvp_label(group: dict) -> str:
    words = [f"tg {group['tgId']}", group["parameterSet"]]
    words.append(group.get("function", ""))
    words.append(group.get("signatureInterface", ""))
    if group.get("preHash") not in (None, "none"):
        words.append(group["preHash"])
    if group.get("externalMu"):
        words.append("externalMu")
    if "deterministic" in group:
        words.append("deterministic" if group["deterministic"] else "hedged")
    return " ".join(w for w in words if w)


def _acvp_lacks_outputs(algorithm: str, mode: str, groups: list) -> bool:
    """Whether this is a prompt file, whose outputs are in expectedResults."""
    for group in groups:
        if mode == "encapDecap":
            functions = {"encapsulation": "c", "decapsulation": "k"}
            output = functions.get(group.get("function"), "testPassed")
        elif mode == "keyGen":
            output = "ek" if algorithm == "ML-KEM" else "pk"
        else:
            output = "signature" if mode == "sigGen" else "testPassed"
        if any(output not in test for test in group.get("tests", [])):
            return True
    return False


def _acvp_join(path: Path, groups: list) -> list:
    """Merge expectedResults.json (beside ``path``) into the prompt's tests."""
    results_path = path.with_name("expectedResults.json")
    if not results_path.exists():
        raise VectorFileError(
            f"{path} is an ACVP prompt without outputs, and there is no "
            f"expectedResults.json beside it ({results_path})."
        )
    results = _read_json(results_path)
    expected = {
        test["tcId"]: test
        for group in results.get("testGroups", [])
        for test in group.get("tests", [])
    }
    joined = []
    for group in groups:
        tests = []
        for test in group["tests"]:
            if test["tcId"] not in expected:
                raise VectorFileError(
                    f"{results_path} has no result for tcId {test['tcId']}."
                )
            tests.append({**test, **expected[test["tcId"]]})
        joined.append({**group, "tests": tests})
    return joined


def _acvp_kem_keygen(where: _Group, group: dict, test: dict) -> VectorCase:
    # FIPS 203 Algorithm 16: the seed form of dk is d || z.
    seed = _hex(test, "d") + _hex(test, "z")
    expect = equal(
        ("ek", _hex(test, "ek")),
        ("dk_seed", seed),
        ("dk", _hex(test, "dk")),
        optional=("dk",),
    )
    return where.case(
        test, Step(_op(Kind.KEM_KEYGEN, where), KemKeygenIn(seed), expect)
    )


def _acvp_encap_decap(where: _Group, group: dict, test: dict) -> VectorCase:
    function = group.get("function")
    if function == "encapsulation":
        lane = KemEncapsIn(_hex(test, "ek"), _hex(test, "m"))
        expect = equal(("ct", _hex(test, "c")), ("ss", _hex(test, "k")))
        step = Step(_op(Kind.KEM_ENCAPS, where), lane, expect)
        return where.case(test, step, needs=frozenset({Need.COINS}))
    if function == "decapsulation":
        # A modified ciphertext still yields a key: J(z || c), FIPS 203 Alg. 18.
        lane = KemDecapsIn(_hex(test, "dk"), _hex(test, "c"))
        step = Step(_op(Kind.KEM_DECAPS, where), lane, equal(("", _hex(test, "k"))))
        return where.case(test, step, needs=frozenset({Need.EXPANDED_DK}))
    if function == "encapsulationKeyCheck":
        # FIPS 203 section 7.2: the modulus check on ek.
        expect = ACCEPTED if test["testPassed"] else REFUSED
        step = Step(_op(Kind.KEM_ENCAPS, where), KemEncapsIn(_hex(test, "ek")), expect)
        return where.case(test, step)
    if function == "decapsulationKeyCheck":
        return _acvp_dk_check(where, test)
    raise VectorFileError(f"ACVP encapDecap function {function!r} is not supported.")


def _acvp_dk_check(where: _Group, test: dict) -> VectorCase:
    # FIPS 203 section 7.3: the H(ek) check on dk. Any ciphertext of the
    # right length will do; a valid dk answers with a key.
    spec = P.kem_params(where.param)
    lane = KemDecapsIn(_hex(test, "dk"), bytes(spec.ct_bytes))
    expect = ACCEPTED if test["testPassed"] else REFUSED
    step = Step(_op(Kind.KEM_DECAPS, where), lane, expect)
    return where.case(test, step, needs=frozenset({Need.EXPANDED_DK}))


def _acvp_sig_keygen(where: _Group, group: dict, test: dict) -> VectorCase:
    expect = equal(
        ("pk", _hex(test, "pk")),
        ("sk_seed", _hex(test, "seed")),
        ("sk", _hex(test, "sk")),
        optional=("sk",),
    )
    lane = SigKeygenIn(_hex(test, "seed"))
    return where.case(test, Step(_op(Kind.SIG_KEYGEN, where), lane, expect))


def _acvp_signing_input(group: dict, test: dict) -> tuple[bytes, bytes, str]:
    """(message, context, mode) of an ACVP sigGen or sigVer case (FIPS 204)."""
    if group.get("signatureInterface") == "internal":
        if group.get("externalMu"):
            return _hex(test, "mu"), b"", "mu"
        return _hex(test, "message"), b"", "internal"  # the message is M'

    message = _hex(test, "message")
    context = _hex_or_empty(test, "context")
    if group.get("preHash") == "preHash":
        m_prime = hash_ml_dsa_message(message, context, test["hashAlg"])
        return m_prime, b"", "internal"
    return message, context, "pure"


_MODE_NEEDS = {"internal": {Need.INTERNAL}, "mu": {Need.MU}, "pure": set()}
LONG_PREHASH_CONTEXT = (
    "a HashML-DSA context over 255 bytes has no M' (FIPS 204, Algorithm 4)"
)


def _long_prehash_context(group: dict, test: dict) -> bool:
    if group.get("preHash") != "preHash":
        return False
    return len(_hex_or_empty(test, "context")) > P.SIG_MAX_CONTEXT_BYTES


def _acvp_sig_gen(where: _Group, group: dict, test: dict) -> VectorCase:
    if _long_prehash_context(group, test):
        return where.case(test, skip=LONG_PREHASH_CONTEXT)
    message, context, mode = _acvp_signing_input(group, test)
    rnd = ZERO_RND if group["deterministic"] else _hex(test, "rnd")
    lane = SigSignIn(0, message, context, rnd, mode)
    key = SignKey(where.param, _hex(test, "sk"))
    expect = equal(("", _hex(test, "signature")))
    step = Step(_op(Kind.SIG_SIGN, where), lane, expect, key)
    needs = {Need.EXPANDED_SK, Need.RND, *_MODE_NEEDS[mode]}
    return where.case(test, step, needs=frozenset(needs))


def _acvp_sig_ver(where: _Group, group: dict, test: dict) -> VectorCase:
    if _long_prehash_context(group, test):
        return where.case(test, skip=LONG_PREHASH_CONTEXT)
    message, context, mode = _acvp_signing_input(group, test)
    lane = SigVerifyIn(
        _hex(test, "pk"), message, _hex(test, "signature"), context, mode
    )
    step = Step(_op(Kind.SIG_VERIFY, where), lane, verify(test["testPassed"]))
    return where.case(test, step, needs=frozenset(_MODE_NEEDS[mode]))


_ACVP_BUILDERS = {
    ("ML-KEM", "keyGen"): _acvp_kem_keygen,
    ("ML-KEM", "encapDecap"): _acvp_encap_decap,
    ("ML-DSA", "keyGen"): _acvp_sig_keygen,
    ("ML-DSA", "sigGen"): _acvp_sig_gen,
    ("ML-DSA", "sigVer"): _acvp_sig_ver,
}


def _op(kind: Kind, where: _Group) -> OpKey:
    return OpKey(kind, where.param)


# -- Wycheproof --------------------------------------------------------------


def _wycheproof_file(path: str, doc: dict) -> VectorFile:
    cases: list[VectorCase] = []
    kinds: list[str] = []
    for number, group in enumerate(doc["testGroups"], start=1):
        kind = group.get("type")
        builder = _WYCHEPROOF_BUILDERS.get(kind)
        if builder is None:
            raise VectorFileError(
                f"{path}: Wycheproof test type {kind!r} is not supported; expected "
                f"one of {', '.join(_WYCHEPROOF_BUILDERS)}."
            )
        param = group.get("parameterSet") or doc.get("algorithm", "")
        source = group.get("source", {}).get("name", "")
        label = f"group {number} {kind} {source}".strip()
        where = _Group(path, number, label, param)
        cases += [builder(where, group, test) for test in group["tests"]]
        kinds += [kind] if kind not in kinds else []
    return VectorFile(path, "Wycheproof " + ", ".join(kinds), tuple(cases))


def _valid(test: dict) -> bool:
    # "acceptable" does not occur in these files; treat it as must-succeed.
    return test.get("result") != "invalid"


def _wp_kem_keygen(where: _Group, group: dict, test: dict) -> VectorCase:
    seed = _hex(test, "seed")
    if not _valid(test):
        step = Step(_op(Kind.KEM_KEYGEN, where), KemKeygenIn(seed), REFUSED)
        return where.case(test, step)
    expect = equal(("ek", _hex(test, "ek")), ("dk", _hex(test, "dk")), optional=("dk",))
    return where.case(
        test, Step(_op(Kind.KEM_KEYGEN, where), KemKeygenIn(seed), expect)
    )


def _wp_kem_encaps(where: _Group, group: dict, test: dict) -> VectorCase:
    op = _op(Kind.KEM_ENCAPS, where)
    if not _valid(test):
        return where.case(test, Step(op, KemEncapsIn(_hex(test, "ek")), REFUSED))
    lane = KemEncapsIn(_hex(test, "ek"), _hex(test, "m"))
    expect = equal(("ct", _hex(test, "c")), ("ss", _hex(test, "K")))
    return where.case(test, Step(op, lane, expect), needs=frozenset({Need.COINS}))


def _wp_kem_test(where: _Group, group: dict, test: dict) -> VectorCase:
    """KeyGen from the seed d || z, then decapsulation (Wycheproof MLKEMTest)."""
    seed, ct = _hex(test, "seed"), _hex(test, "c")
    decaps = Step(_op(Kind.KEM_DECAPS, where), KemDecapsIn(seed, ct), REFUSED)
    if _valid(test):
        decaps = decaps._replace(expect=equal(("", _hex(test, "K"))))

    steps = [decaps]
    if test.get("ek") and len(seed) == P.KEM_SEED_BYTES:
        keygen = equal(("ek", _hex(test, "ek")))
        steps.append(Step(_op(Kind.KEM_KEYGEN, where), KemKeygenIn(seed), keygen))
    return where.case(test, *steps)


def _wp_kem_decaps_check(where: _Group, group: dict, test: dict) -> VectorCase:
    lane = KemDecapsIn(_hex(test, "dk"), _hex(test, "c"))
    expect = equal(("", _hex(test, "K"))) if _valid(test) else REFUSED
    step = Step(_op(Kind.KEM_DECAPS, where), lane, expect)
    return where.case(test, step, needs=frozenset({Need.EXPANDED_DK}))


def _wp_sig_sign(where: _Group, group: dict, test: dict) -> VectorCase:
    # KeyGen fixes the public key of a seed; an expanded sk holds only
    # tr = H(pk), so what loading one returns is not compared.
    if "privateSeed" in group:
        public = _hex_or_none(group, "publicKey")
        key = SignKey(where.param, _hex(group, "privateSeed"), public)
        needs = set()
    else:
        key = SignKey(where.param, _hex(group, "privateKey"))
        needs = {Need.EXPANDED_SK}

    # Tests without ``msg`` give only mu (flag "Internal"): external-mu signing.
    if "msg" in test:
        message, context, mode = _hex(test, "msg"), _hex_or_empty(test, "ctx"), "pure"
    elif "mu" in test:
        message, context, mode = _hex(test, "mu"), b"", "mu"
    else:  # a key that must be refused; there is nothing to sign
        message, context, mode = b"", b"", "pure"
    needs |= _MODE_NEEDS[mode]

    op = _op(Kind.SIG_SIGN, where)
    if not _valid(test):
        lane = SigSignIn(0, message, context, None, mode)
        return where.case(test, Step(op, lane, REFUSED, key), needs=frozenset(needs))
    rnd = _hex(test, "rnd") if test.get("rnd") else ZERO_RND
    lane = SigSignIn(0, message, context, rnd, mode)
    step = Step(op, lane, equal(("", _hex(test, "sig"))), key)
    return where.case(test, step, needs=frozenset(needs | {Need.RND}))


def _wp_sig_verify(where: _Group, group: dict, test: dict) -> VectorCase:
    pk = _hex(group, "publicKey")
    message, context = _hex_or_empty(test, "msg"), _hex_or_empty(test, "ctx")
    lane = SigVerifyIn(pk, message, _hex(test, "sig"), context)
    step = Step(_op(Kind.SIG_VERIFY, where), lane, verify(_valid(test)))
    return where.case(test, step)


_WYCHEPROOF_BUILDERS = {
    "MLKEMKeyGen": _wp_kem_keygen,
    "MLKEMEncapsTest": _wp_kem_encaps,
    "MLKEMTest": _wp_kem_test,
    "MLKEMDecapsValidationTest": _wp_kem_decaps_check,
    "MlDsaSign": _wp_sig_sign,
    "MlDsaVerify": _wp_sig_verify,
}


# -- run or skip -------------------------------------------------------------


def skip_reason(case: VectorCase, backend: Backend) -> str | None:
    """Why ``backend`` cannot run ``case`` (None: it can); see the module doc."""
    if case.skip:
        return case.skip
    for step in case.steps:
        if not backend.serves(step.op):
            return (
                f"{step.op.param} {step.op.kind.value} is not served by the "
                f"{backend.name} backend"
            )
    lacking = BACKEND_LIMITS.get(backend.name, frozenset())
    if not backend.deterministic:
        lacking |= {Need.COINS, Need.RND}
    for need in Need:  # a fixed order, so that each case gets one reason
        if need in case.needs and need in lacking:
            return f"the {backend.name} backend cannot take {need.value}"
    return None


class _Broken(NamedTuple):
    """A lane result that is neither an answer nor a refusal of the input."""

    reason: str


_Ref = tuple[int, int]  # (case index, step index)


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _run_chunk(backend: Backend, op: OpKey, lanes: Sequence[tuple]) -> list[object]:
    """One ``run_batch`` call; a batch-wide failure becomes each lane's result."""
    logger.debug("Running %d lanes of %s on %s", len(lanes), op, backend.name)
    try:
        out = backend.run_batch(op, lanes)
    except PqcError as exc:
        return [_Broken(f"the whole batch failed: {exc}")] * len(lanes)
    if len(out) != len(lanes):
        broken = _Broken(f"run_batch gave {len(out)} results for {len(lanes)} lanes")
        return [broken] * len(lanes)
    return list(out)


class _Slots:
    """Signing keys loaded into backend slots, each once, dropped when done."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._numbers = itertools.count(1)
        self._state: dict[SignKey, object] = {}  # a slot number or a failure
        self._live: dict[SignKey, int] = {}

    def get(self, key: SignKey) -> object:
        if key not in self._state:
            self._state[key] = self._load(key)
        return self._state[key]

    def _load(self, key: SignKey) -> object:
        slot = next(self._numbers)
        try:
            public = self._backend.load_signing_key(slot, key.param, key.material)
        except InvalidInput as exc:
            return exc
        except PqcError as exc:
            return _Broken(f"load_signing_key failed: {exc}")
        except ValueError as exc:  # what the libraries say of a bad key
            return InvalidInput(f"The signing key was refused: {exc}")
        self._live[key] = slot
        if key.public_key is not None and bytes(public) != key.public_key:
            return _Broken("the key's public key differs from the expected one")
        return slot

    def drop(self, key: SignKey) -> None:
        slot = self._live.pop(key, None)
        if slot is not None:
            self._backend.drop_signing_key(slot)

    def drop_all(self) -> None:
        for key in list(self._live):
            self.drop(key)


def _run_signing(
    backend: Backend, op: OpKey, items: list[tuple[_Ref, Step]], batch: int
) -> dict[_Ref, object]:
    # Lanes of one key are kept together, so that each key is loaded once
    # and at most about ``batch`` keys are in slots at any time.
    order = {key: n for n, key in enumerate(dict.fromkeys(s.key for _, s in items))}
    items = sorted(items, key=lambda item: order[item[1].key])
    chunks = list(_chunks(items, batch))
    last_chunk = {step.key: n for n, chunk in enumerate(chunks) for _, step in chunk}

    results: dict[_Ref, object] = {}
    slots = _Slots(backend)
    try:
        for n, chunk in enumerate(chunks):
            results.update(_sign_chunk(backend, op, chunk, slots))
            for key in {step.key for _, step in chunk if last_chunk[step.key] == n}:
                slots.drop(key)
    finally:
        slots.drop_all()
    return results


def _sign_chunk(
    backend: Backend, op: OpKey, chunk: Sequence[tuple[_Ref, Step]], slots: _Slots
) -> dict[_Ref, object]:
    results: dict[_Ref, object] = {}
    ready: list[tuple[_Ref, tuple]] = []
    for ref, step in chunk:
        slot = slots.get(step.key)
        if isinstance(slot, int):
            ready.append((ref, step.lane._replace(slot=slot)))
        else:  # the key itself was refused, or the load broke
            results[ref] = slot
    if ready:
        out = _run_chunk(backend, op, [lane for _, lane in ready])
        results.update(zip((ref for ref, _ in ready), out, strict=True))
    return results


def _execute(
    cases: Sequence[VectorCase], backend: Backend, batch: int
) -> dict[_Ref, object]:
    """Run every step of ``cases``, batched by ``OpKey``; results by step."""
    by_op: dict[OpKey, list[tuple[_Ref, Step]]] = {}
    for c, case in enumerate(cases):
        for s, step in enumerate(case.steps):
            by_op.setdefault(step.op, []).append(((c, s), step))

    results: dict[_Ref, object] = {}
    for op, items in by_op.items():
        if op.kind is Kind.SIG_SIGN:
            results.update(_run_signing(backend, op, items, batch))
            continue
        for chunk in _chunks(items, batch):
            out = _run_chunk(backend, op, [step.lane for _, step in chunk])
            results.update(zip((ref for ref, _ in chunk), out, strict=True))
    return results


# -- verdicts ----------------------------------------------------------------


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _refusal(result: InvalidInput) -> str:
    return f"the backend refused the input: {_short(str(result))}"


def judge(expect: Expect, result: object) -> str | None:
    """Why ``result`` does not meet ``expect`` (None: it does)."""
    if isinstance(result, _Broken):
        return result.reason
    refused = isinstance(result, InvalidInput)
    if isinstance(result, BaseException) and not refused:
        return f"the lane failed: {_short(str(result))}"
    if expect.outcome == "refused":
        return None if refused else "the input was accepted, but it must be refused"
    if refused:
        if expect.outcome == "verify" and not expect.verified:
            return None  # refusing to verify is rejecting the signature
        return _refusal(result)
    if expect.outcome == "verify" and result != expect.verified:
        return f"verification gave {result}, expected {expect.verified}"
    if expect.outcome == "equal":
        return _compare(expect, result)
    return None


def _compare(expect: Expect, result: object) -> str | None:
    for name, want in expect.fields:
        got = result if name == "" else getattr(result, name, None)
        if got is None and name in expect.optional:
            continue
        if not isinstance(got, bytes | bytearray | memoryview):
            return f"the result has no bytes {name or 'output'}"
        if bytes(got) != want:
            return f"{name or 'the output'} differs from the expected value"
    return None


def _case_failure(case: VectorCase, results: dict[_Ref, object], c: int) -> str | None:
    for s, step in enumerate(case.steps):
        reason = judge(step.expect, results[(c, s)])
        if reason is not None:
            prefix = f"{step.op.kind.value}: " if len(case.steps) > 1 else ""
            return prefix + reason
    return None


# -- report ------------------------------------------------------------------


@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.passed += other.passed
        self.failed += other.failed
        self.skipped += other.skipped
        self.skip_reasons.update(other.skip_reasons)


@dataclass
class FileReport:
    path: str
    kind: str
    groups: dict[str, Tally] = field(default_factory=dict)

    @property
    def total(self) -> Tally:
        total = Tally()
        for tally in self.groups.values():
            total.add(tally)
        return total


class Failure(NamedTuple):
    file: str
    group: str
    test_id: int
    reason: str


@dataclass
class Report:
    """Counts per file and per test group, skip reasons, and failures."""

    backend: str
    batch: int
    files: dict[str, FileReport] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def total(self) -> Tally:
        total = Tally()
        for report in self.files.values():
            total.add(report.total)
        return total

    def add_file(self, vectors: VectorFile) -> None:
        report = FileReport(vectors.path, vectors.kind)
        for case in vectors.cases:
            report.groups.setdefault(case.group_label, Tally())
        self.files[vectors.path] = report

    def record(
        self, case: VectorCase, failure: str | None = None, skip: str | None = None
    ) -> None:
        tally = self.files[case.file].groups[case.group_label]
        if skip is not None:
            tally.skipped += 1
            tally.skip_reasons[skip] += 1
        elif failure is not None:
            tally.failed += 1
            self.failures.append(
                Failure(case.file, case.group_label, case.test_id, failure)
            )
        else:
            tally.passed += 1

    def render(self) -> str:
        """The text table the CLI prints."""
        lines = [f"Vectors on the {self.backend} backend (batch {self.batch})", ""]
        width = max((len(g) for f in self.files.values() for g in f.groups), default=10)
        width = max(width + 2, 24)
        for report in self.files.values():
            lines += _render_file(report, width)
        total = self.total
        lines.append(
            f"All files: {total.passed} passed, {total.failed} failed, "
            f"{total.skipped} skipped."
        )
        if self.failures:
            lines += ["", "Failures:"]
            lines += [
                f"  {f.file} [{f.group}] tcId {f.test_id}: {f.reason}"
                for f in self.failures
            ]
        return "\n".join(lines)


def _row(label: str, tally: Tally, width: int) -> str:
    counts = f"{tally.passed:>7} {tally.failed:>7} {tally.skipped:>8}"
    return f"  {label:<{width}}{counts}".rstrip()


def _render_file(report: FileReport, width: int) -> list[str]:
    lines = [f"{report.path} ({report.kind})"]
    lines.append(f"  {'group':<{width}} passed  failed  skipped")
    for label, tally in report.groups.items():
        row = _row(label, tally, width)
        if tally.skip_reasons:
            row += "  " + "; ".join(tally.skip_reasons)
        lines.append(row)
    total = report.total
    lines.append(_row("total", total, width))
    for reason, count in total.skip_reasons.most_common():
        lines.append(f"  skipped {count}: {reason}")
    lines.append("")
    return lines


# -- entry points -----------------------------------------------------------


def run_files(paths: Iterable[str | Path], backend: Backend, batch: int = 64) -> Report:
    """Run every case of the vector files ``paths`` on ``backend``."""
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"The batch size must be a positive integer, not {batch!r}.")
    report = Report(backend.name, batch)
    runnable: list[VectorCase] = []
    for path in paths:
        vectors = load_file(path)
        report.add_file(vectors)
        for case in vectors.cases:
            reason = skip_reason(case, backend)
            if reason is None:
                runnable.append(case)
            else:
                report.record(case, skip=reason)

    results = _execute(runnable, backend, batch)
    for c, case in enumerate(runnable):
        report.record(case, failure=_case_failure(case, results, c))
    return report


def backend_by_name(name: str, config: object | None = None) -> Backend:
    """Construct the backend called ``name`` ("device", "openssl", "liboqs")."""
    if name == "openssl":
        from engine.backends.openssl import OpenSSLBackend

        return OpenSSLBackend()
    if name == "liboqs":
        from engine.backends.liboqs import LiboqsBackend

        return LiboqsBackend()
    if name == "device":
        return _device_backend(config)
    raise ValueError(
        f"{name!r} is not a backend; expected one of {', '.join(BACKEND_NAMES)}."
    )


def _device_backend(config: object | None) -> Backend:
    from engine.config import EngineConfig

    try:
        from engine.backends.device import DeviceBackend
    except ModuleNotFoundError as exc:
        if exc.name != "engine.backends.device":
            raise BackendUnavailable(
                f"The device backend could not be loaded: {exc}."
            ) from exc
        raise BackendUnavailable(
            "The device backend is not built into this installation."
        ) from None
    return DeviceBackend(config if config is not None else EngineConfig())
