"""Known-answer self-tests run on every backend before it serves traffic.

Each test feeds a backend fixed inputs and compares its answers with values
computed independently: key generation against SHA-256 digests of the first
NIST ACVP keyGen case of each parameter set, decapsulation of a corrupted
ciphertext against FIPS 203's implicit-rejection key J(z || c) computed here
with hashlib's SHAKE256, and round trips (encapsulate then decapsulate,
sign then verify, and a tampered signature that must fail).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from engine import params as P
from engine.backends.base import Backend
from engine.errors import PqcError
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

# First ACVP keyGen case per parameter set (tests/vectors/acvp): seed and
# SHA-256 of the expected public key. tests/test_selftest.py re-derives these.
KEM_KATS = {
    "ML-KEM-512": (
        "47b893474672ba92e4b12ee44fb32953af8e8503b5fb471d1614fb8a021a660a"
        "1f8cb39e9e30bc458a0dc5408884b1187fb217018df760fa57317703b844a0a9",
        "7e4a2b716a684c1ad33c43c808782da9e1a72f14ccda82723f712d49f53a9f28",
    ),
    "ML-KEM-768": (
        "e582b7d75e6c80b05ae392a1fc9f7153b12390fd99930368cc67a768baebc8a0"
        "1cdacb8740c0b87c4a379575f187b367cbfa3b300bf591b109f79816e9cbe8f0",
        "4158f6afb5e516c99f1da07da8c651348422b17c1f4e9a08ad73fb1f91249b3e",
    ),
    "ML-KEM-1024": (
        "f3a706faf090c03db506863ab0b20bd8a1627956318e88c67eb875e8e7266009"
        "35d2bc43dd1cc879f765bf2a0c5e297889dde910e57e2bb0eae417b90ab7a275",
        "b78619e4fceeeb86dee3fedb945eca6da61dae312771ef8fa871951d391bd7b6",
    ),
}
SIG_KATS = {
    "ML-DSA-44": (
        "7194b13c95231010afd2c909992bd2003ba6f437c3886bdbe3f6b867a14ba161",
        "838b88b6ac41e2c60698173e08ca173d0b0d2839205806e56a8a3d53195f3a03",
    ),
    "ML-DSA-65": (
        "a991fd42b071d49c48ae3e75c647459e0daad1e1ba356a04801912d3294bcff8",
        "b1a7d0d2f0d7a04b9d5ffccd9bd578864dab4a01cdd7f70a05cd1f4f0672e43a",
    ),
    "ML-DSA-87": (
        "a16f5b0796703e2d1a0140a35cbf36efabe70e752ba59b6a9a0e9c4b05302f73",
        "33f49649f05ec2fc3b050007b18ade043bbc8d1c0ded03a269d540486daaa5f4",
    ),
}
_SELFTEST_SLOT = -1  # a slot number the engine never hands out


@dataclass
class SelfTestReport:
    backend: str
    passed: bool = True
    checked: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        self.passed = False
        self.failures.append(what)


def run_selftests(backend: Backend) -> SelfTestReport:
    """Run every known-answer test the backend's capabilities allow."""
    report = SelfTestReport(backend.name)
    params = {key.param for key in backend.capabilities()}
    for param in sorted(params):
        try:
            if param in P.KEM_PARAMS:
                _kem_tests(backend, param, report)
            else:
                _sig_tests(backend, param, report)
        except Exception as exc:  # a crash is a failure, not an outage
            report.fail(f"{param}: raised {type(exc).__name__}: {exc}")
    if report.passed:
        logger.info("Self-tests passed on %s: %s", backend.name, report.checked)
    else:
        logger.error("Self-tests failed on %s: %s", backend.name, report.failures)
    return report


def _one(backend: Backend, kind: Kind, param: str, lane: tuple) -> object:
    key = OpKey(kind, param)
    if not backend.serves(key):
        return None
    (result,) = backend.run_batch(key, [lane])
    if isinstance(result, Exception):
        raise result
    if result is None:
        # None means "not served" to the checks below; a served operation
        # that answers None must fail, not be skipped.
        raise PqcError(f"{key} returned no answer.")
    return result


def _kem_tests(backend: Backend, param: str, report: SelfTestReport) -> None:
    seed_hex, ek_digest = KEM_KATS[param]
    seed = bytes.fromhex(seed_hex)
    pair = _one(backend, Kind.KEM_KEYGEN, param, KemKeygenIn(seed))
    if pair is not None:
        _expect(
            report, f"{param} keygen", hashlib.sha256(pair.ek).hexdigest(), ek_digest
        )

    ek = pair.ek if pair is not None else None
    if ek is None or not backend.serves(OpKey(Kind.KEM_DECAPS, param)):
        return
    enc = _one(backend, Kind.KEM_ENCAPS, param, KemEncapsIn(ek))
    if enc is not None:
        ss = _one(backend, Kind.KEM_DECAPS, param, KemDecapsIn(seed, enc.ct))
        _expect(report, f"{param} encaps/decaps", ss, enc.ss)

    # FIPS 203, Algorithm 18: a ciphertext that does not re-encrypt yields
    # K-bar = J(z || c), with J = SHAKE256(., 32) and z the seed's last half.
    bad_ct = bytes(i % 251 for i in range(P.kem_params(param).ct_bytes))
    rejected = _one(backend, Kind.KEM_DECAPS, param, KemDecapsIn(seed, bad_ct))
    expected = hashlib.shake_256(seed[32:] + bad_ct).digest(32)
    _expect(report, f"{param} implicit rejection", rejected, expected)


def _sig_tests(backend: Backend, param: str, report: SelfTestReport) -> None:
    seed_hex, pk_digest = SIG_KATS[param]
    seed = bytes.fromhex(seed_hex)
    pair = _one(backend, Kind.SIG_KEYGEN, param, SigKeygenIn(seed))
    if pair is not None:
        _expect(
            report, f"{param} keygen", hashlib.sha256(pair.pk).hexdigest(), pk_digest
        )

    if not backend.serves(OpKey(Kind.SIG_SIGN, param)):
        return
    pk = backend.load_signing_key(_SELFTEST_SLOT, param, seed)
    try:
        message, context = b"pqc-engine self-test", b"self-test"
        sig = _one(
            backend, Kind.SIG_SIGN, param, SigSignIn(_SELFTEST_SLOT, message, context)
        )
    finally:
        backend.drop_signing_key(_SELFTEST_SLOT)
    ok = _one(backend, Kind.SIG_VERIFY, param, SigVerifyIn(pk, message, sig, context))
    _expect(report, f"{param} sign/verify", ok, True)

    tampered = bytes([sig[0] ^ 1]) + sig[1:]
    bad = _one(
        backend, Kind.SIG_VERIFY, param, SigVerifyIn(pk, message, tampered, context)
    )
    _expect(report, f"{param} tampered signature", bad, False)


def _expect(report: SelfTestReport, what: str, got: object, want: object) -> None:
    if got is None:
        return
    report.checked.append(what)
    if got != want:
        report.fail(f"{what}: wrong answer")
