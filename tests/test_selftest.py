"""Known-answer self-tests: their constants, and that they catch wrong answers.

The broken backends below wrap the real OpenSSL backend and spoil one kind
of answer each; ``run_selftests`` must name exactly what went wrong.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import pytest

from engine import KEM_PARAMS, SIG_PARAMS
from engine.backends.openssl import OpenSSLBackend
from engine.ops import Kind, OpKey
from engine.selftest import KEM_KATS, SIG_KATS, run_selftests
from tests.vectors import hexbytes, load

pytestmark = pytest.mark.timeout(60)

ACVP_KEM_KEYGEN = "acvp/ML-KEM-keyGen-FIPS203/internalProjection.json"
ACVP_SIG_KEYGEN = "acvp/ML-DSA-keyGen-FIPS204/internalProjection.json"
OPENSSL_PARAMS = ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87", "ML-KEM-1024", "ML-KEM-768"]


def first_case(relative: str, param: str) -> dict:
    groups = load(relative)["testGroups"]
    return next(g for g in groups if g["parameterSet"] == param)["tests"][0]


# -- the constants come from the ACVP files --------------------------------


def test_every_parameter_set_has_a_kat():
    assert set(KEM_KATS) == set(KEM_PARAMS)
    assert set(SIG_KATS) == set(SIG_PARAMS)


@pytest.mark.parametrize("param", list(KEM_KATS))
def test_kem_kat_matches_the_first_acvp_case(param):
    case = first_case(ACVP_KEM_KEYGEN, param)
    seed = hexbytes(case["d"]) + hexbytes(case["z"])

    assert KEM_KATS[param] == (
        seed.hex(),
        hashlib.sha256(hexbytes(case["ek"])).hexdigest(),
    )


@pytest.mark.parametrize("param", list(SIG_KATS))
def test_sig_kat_matches_the_first_acvp_case(param):
    case = first_case(ACVP_SIG_KEYGEN, param)

    assert SIG_KATS[param] == (
        hexbytes(case["seed"]).hex(),
        hashlib.sha256(hexbytes(case["pk"])).hexdigest(),
    )


# -- a correct backend passes ------------------------------------------------


def test_openssl_passes_every_check():
    backend = OpenSSLBackend(threads=1)
    try:
        report = run_selftests(backend)
    finally:
        backend.close()

    assert report.passed and report.failures == []
    assert report.backend == "openssl"
    kem = ["keygen", "encaps/decaps", "implicit rejection"]
    sig = ["keygen", "sign/verify", "tampered signature"]
    assert report.checked == [
        f"{param} {check}"
        for param in OPENSSL_PARAMS
        for check in (kem if param.startswith("ML-KEM") else sig)
    ]


# -- a backend with a wrong answer fails -------------------------------------


def flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


class Spoiled(OpenSSLBackend):
    """OpenSSL with one kind of answer spoiled by ``spoil``."""

    name = "spoiled"

    def __init__(self, kind: Kind, spoil) -> None:
        super().__init__(threads=1)
        self._kind = kind
        self._spoil = spoil

    def run_batch(self, key: OpKey, lanes: Sequence[tuple]) -> list[object]:
        results = super().run_batch(key, lanes)
        if key.kind is not self._kind:
            return results
        return [self._spoil(r) for r in results]


SPOILS = {
    # A flipped byte of rho: still a valid key, but not the ACVP one.
    "kem-keygen": (Kind.KEM_KEYGEN, lambda r: r._replace(ek=flip_last_byte(r.ek))),
    "sig-keygen": (Kind.SIG_KEYGEN, lambda r: r._replace(pk=flip_last_byte(r.pk))),
    # Explicit rejection with zeros instead of FIPS 203's J(z || c).
    "kem-decaps": (Kind.KEM_DECAPS, lambda r: bytes(32)),
    "sig-verify-accepts-all": (Kind.SIG_VERIFY, lambda r: True),
    "kem-decaps-no-answer": (Kind.KEM_DECAPS, lambda r: None),
}
EXPECTED_FAILURES = {
    "kem-keygen": [
        f"{p} {check}: wrong answer"
        for p in ("ML-KEM-1024", "ML-KEM-768")
        for check in ("keygen", "encaps/decaps")
    ],
    "sig-keygen": [f"{p} keygen: wrong answer" for p in SIG_PARAMS],
    "kem-decaps": [
        f"{p} {check}: wrong answer"
        for p in ("ML-KEM-1024", "ML-KEM-768")
        for check in ("encaps/decaps", "implicit rejection")
    ],
    "sig-verify-accepts-all": [
        f"{p} tampered signature: wrong answer" for p in SIG_PARAMS
    ],
    "kem-decaps-no-answer": [
        f"{p}: raised PqcError: kem_decaps/{p} returned no answer."
        for p in ("ML-KEM-1024", "ML-KEM-768")
    ],
}


@pytest.fixture(params=list(SPOILS))
def spoiled(request) -> Iterator[tuple[str, Spoiled]]:
    backend = Spoiled(*SPOILS[request.param])
    yield request.param, backend
    backend.close()


def test_wrong_answers_fail_and_are_named(spoiled):
    name, backend = spoiled

    report = run_selftests(backend)

    assert report.passed is False
    assert report.failures == EXPECTED_FAILURES[name]


class Crashing(OpenSSLBackend):
    name = "crashing"

    def run_batch(self, key: OpKey, lanes: Sequence[tuple]) -> list[object]:
        raise RuntimeError("The device is gone.")


def test_a_crash_is_a_failure_per_parameter_set():
    backend = Crashing(threads=1)
    try:
        report = run_selftests(backend)
    finally:
        backend.close()

    assert report.passed is False
    assert report.checked == []
    assert report.failures == [
        f"{param}: raised RuntimeError: The device is gone." for param in OPENSSL_PARAMS
    ]
