"""The OpenSSL backend against NIST ACVP and Wycheproof vectors.

Each vector group runs as one batch through ``run_batch``, the way the
engine drives a backend; a mismatch names its test case. Cases the backend
cannot take (caller-given randomness, expanded keys, parameter sets OpenSSL
lacks) are skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine import KEM_PARAMS, SIG_PARAMS, InvalidInput
from engine.backends.openssl import OpenSSLBackend
from engine.ops import (
    KemDecapsIn,
    KemEncapsIn,
    KemEncapsOut,
    KemKeygenIn,
    Kind,
    OpKey,
    SigKeygenIn,
    SigSignIn,
    SigVerifyIn,
)
from tests.vectors import hexbytes, load

pytestmark = pytest.mark.timeout(60)

ACVP_KEM_KEYGEN = "acvp/ML-KEM-keyGen-FIPS203/internalProjection.json"
ACVP_KEM_ENCAP_DECAP = "acvp/ML-KEM-encapDecap-FIPS203/internalProjection.json"
ACVP_SIG_KEYGEN = "acvp/ML-DSA-keyGen-FIPS204/internalProjection.json"
ACVP_SIG_VERIFY = "acvp/ML-DSA-sigVer-FIPS204/internalProjection.json"
WYCHEPROOF_KEM = "wycheproof/mlkem_768_test.json"
WYCHEPROOF_SIG_VERIFY = "wycheproof/mldsa_65_verify_test.json"


@pytest.fixture(scope="module")
def backend() -> Iterator[OpenSSLBackend]:
    openssl = OpenSSLBackend(threads=2)
    yield openssl
    openssl.close()


def acvp_group(relative: str, param: str, **match: object) -> dict:
    for group in load(relative)["testGroups"]:
        if group["parameterSet"] == param and match.items() <= group.items():
            return group
    raise LookupError(f"{relative} has no {param} group matching {match}.")


def skip_unless_served(backend: OpenSSLBackend, kind: Kind, param: str) -> None:
    if not backend.serves(OpKey(kind, param)):
        pytest.skip(f"OpenSSL (through cryptography) does not offer {param}.")


def run(backend: OpenSSLBackend, kind: Kind, param: str, lanes: list) -> list:
    results = backend.run_batch(OpKey(kind, param), lanes)
    assert len(results) == len(lanes)
    return results


# -- ACVP ------------------------------------------------------------------


@pytest.mark.parametrize("param", list(KEM_PARAMS))
def test_acvp_kem_keygen(backend, param):
    skip_unless_served(backend, Kind.KEM_KEYGEN, param)
    cases = acvp_group(ACVP_KEM_KEYGEN, param)["tests"]

    # FIPS 203, Algorithm 19: the seed form of the key is d || z.
    seeds = [hexbytes(t["d"]) + hexbytes(t["z"]) for t in cases]
    results = run(backend, Kind.KEM_KEYGEN, param, [KemKeygenIn(s) for s in seeds])

    wrong = [
        t["tcId"]
        for t, seed, r in zip(cases, seeds, results, strict=True)
        if r.ek != hexbytes(t["ek"]) or r.dk_seed != seed
    ]
    assert len(cases) == 25 and wrong == []


@pytest.mark.parametrize("param", list(SIG_PARAMS))
def test_acvp_sig_keygen(backend, param):
    skip_unless_served(backend, Kind.SIG_KEYGEN, param)
    cases = acvp_group(ACVP_SIG_KEYGEN, param)["tests"]

    lanes = [SigKeygenIn(hexbytes(t["seed"])) for t in cases]
    results = run(backend, Kind.SIG_KEYGEN, param, lanes)

    wrong = [
        t["tcId"]
        for t, r in zip(cases, results, strict=True)
        if r.pk != hexbytes(t["pk"]) or r.sk_seed != hexbytes(t["seed"])
    ]
    assert len(cases) == 25 and wrong == []


def sig_verify_groups() -> list:
    params = []
    for group in load(ACVP_SIG_VERIFY)["testGroups"]:
        interface, prehash = group["signatureInterface"], group["preHash"]
        mu = "-external-mu" if group["externalMu"] else ""
        name = f"tg{group['tgId']}-{group['parameterSet']}-{interface}-{prehash}{mu}"
        params.append(pytest.param(group, id=name))
    return params


def sig_verify_lane(group: dict, case: dict) -> SigVerifyIn:
    pk, signature = hexbytes(case["pk"]), hexbytes(case["signature"])
    if group["externalMu"]:
        return SigVerifyIn(pk, hexbytes(case["mu"]), signature, mode="mu")
    if group["signatureInterface"] == "internal":
        return SigVerifyIn(pk, hexbytes(case["message"]), signature, mode="internal")
    message, context = hexbytes(case["message"]), hexbytes(case["context"])
    return SigVerifyIn(pk, message, signature, context)


@pytest.mark.parametrize("group", sig_verify_groups())
def test_acvp_sig_verify(backend, group):
    if group["preHash"] == "preHash":
        pytest.skip("HashML-DSA (pre-hash, FIPS 204 Algorithm 5) is not offered.")
    if group["signatureInterface"] == "internal" and not group["externalMu"]:
        pytest.skip(
            "OpenSSL (through cryptography) has no Verify_internal over M' "
            "(FIPS 204 Algorithm 8); the backend refuses mode 'internal'."
        )
    param, cases = group["parameterSet"], group["tests"]

    lanes = [sig_verify_lane(group, t) for t in cases]
    results = run(backend, Kind.SIG_VERIFY, param, lanes)

    wrong = [
        (t["tcId"], t["reason"], r)
        for t, r in zip(cases, results, strict=True)
        if r is not t["testPassed"]
    ]
    assert wrong == []
    assert {t["testPassed"] for t in cases} == {True, False}


KEM_ENCAP_DECAP_SKIPS = {
    "encapsulation": "OpenSSL cannot encapsulate with caller-given coins (m).",
    "decapsulation": (
        "These cases give only the expanded decapsulation key; OpenSSL "
        "(through cryptography) takes the 64-byte seed form only."
    ),
    "decapsulationKeyCheck": (
        "These cases check expanded decapsulation keys; OpenSSL (through "
        "cryptography) takes the 64-byte seed form only."
    ),
}


def kem_encap_decap_groups() -> list:
    return [
        pytest.param(g, id=f"tg{g['tgId']}-{g['parameterSet']}-{g['function']}")
        for g in load(ACVP_KEM_ENCAP_DECAP)["testGroups"]
    ]


@pytest.mark.parametrize("group", kem_encap_decap_groups())
def test_acvp_kem_encap_decap(backend, group):
    param, cases = group["parameterSet"], group["tests"]
    skip_unless_served(backend, Kind.KEM_ENCAPS, param)
    if group["function"] in KEM_ENCAP_DECAP_SKIPS:
        pytest.skip(KEM_ENCAP_DECAP_SKIPS[group["function"]])

    # FIPS 203, section 7.2: encapsulation first checks that ek re-encodes
    # to itself (every coefficient below q). A key failing it is refused.
    lanes = [KemEncapsIn(hexbytes(t["ek"])) for t in cases]
    results = run(backend, Kind.KEM_ENCAPS, param, lanes)

    wrong = [
        (t["tcId"], t["reason"])
        for t, r in zip(cases, results, strict=True)
        if isinstance(r, KemEncapsOut) is not t["testPassed"]
        or (not t["testPassed"] and not isinstance(r, InvalidInput))
    ]
    assert wrong == []
    assert {t["testPassed"] for t in cases} == {True, False}


def test_acvp_sig_gen_cannot_be_replayed():
    pytest.skip(
        "OpenSSL cannot sign with caller-given rnd, and the ACVP cases give "
        "only expanded signing keys; signing is checked by round trips."
    )


# -- Wycheproof ----------------------------------------------------------------


def wycheproof_kem_cases() -> list[dict]:
    return [t for g in load(WYCHEPROOF_KEM)["testGroups"] for t in g["tests"]]


def test_wycheproof_mlkem_768_valid(backend):
    param = "ML-KEM-768"
    cases = [t for t in wycheproof_kem_cases() if t["result"] == "valid"]

    seeds = [hexbytes(t["seed"]) for t in cases]
    pairs = run(backend, Kind.KEM_KEYGEN, param, [KemKeygenIn(s) for s in seeds])
    lanes = [
        KemDecapsIn(s, hexbytes(t["c"])) for s, t in zip(seeds, cases, strict=True)
    ]
    secrets = run(backend, Kind.KEM_DECAPS, param, lanes)

    wrong = [
        (t["tcId"], t.get("comment", ""))
        for t, pair, ss in zip(cases, pairs, secrets, strict=True)
        if pair.ek != hexbytes(t["ek"]) or ss != hexbytes(t["K"])
    ]
    assert len(cases) == 153 and wrong == []


def test_wycheproof_mlkem_768_wrong_lengths(backend):
    param, spec = "ML-KEM-768", KEM_PARAMS["ML-KEM-768"]
    cases = [t for t in wycheproof_kem_cases() if t["result"] == "invalid"]

    lanes = [KemDecapsIn(hexbytes(t["seed"]), hexbytes(t["c"])) for t in cases]
    results = run(backend, Kind.KEM_DECAPS, param, lanes)

    # Every invalid case here is a seed or ciphertext of the wrong length.
    for t, lane, result in zip(cases, lanes, results, strict=True):
        assert isinstance(result, InvalidInput), t["tcId"]
        if len(lane.dk) != spec.seed_bytes:
            want = f"must be 64 bytes long, but it is {len(lane.dk)} bytes."
        else:
            want = f"must be 1088 bytes long, but it is {len(lane.ct)} bytes."
        assert str(result).endswith(want), t["tcId"]
    assert len(cases) == 40


def wycheproof_verify_cases() -> list[tuple[dict, dict]]:
    groups = load(WYCHEPROOF_SIG_VERIFY)["testGroups"]
    return [(g, t) for g in groups for t in g["tests"]]


def expected_verify(group: dict, case: dict) -> object:
    """What sig_verify owes a case: True, False, or InvalidInput."""
    pk, context = hexbytes(group["publicKey"]), hexbytes(case.get("ctx"))
    if len(pk) != SIG_PARAMS["ML-DSA-65"].pk_bytes or len(context) > 255:
        return InvalidInput
    return case["result"] == "valid"


def test_wycheproof_mldsa_65_verify(backend):
    cases = wycheproof_verify_cases()
    lanes = [
        SigVerifyIn(
            hexbytes(g["publicKey"]),
            hexbytes(t["msg"]),
            hexbytes(t["sig"]),
            hexbytes(t.get("ctx")),
        )
        for g, t in cases
    ]
    results = run(backend, Kind.SIG_VERIFY, "ML-DSA-65", lanes)

    wrong = []
    for (group, case), result in zip(cases, results, strict=True):
        want = expected_verify(group, case)
        got = type(result) if isinstance(result, Exception) else result
        if got is not want:
            wrong.append((case["tcId"], case["comment"], got))
    assert wrong == []
    assert [expected_verify(g, t) for g, t in cases].count(InvalidInput) == 9


# -- what the backend refuses, lane by lane ----------------------------------


def test_caller_given_randomness_is_refused_per_lane(backend):
    pair = run(backend, Kind.KEM_KEYGEN, "ML-KEM-768", [KemKeygenIn(bytes(64))])[0]
    lanes = [KemEncapsIn(pair.ek), KemEncapsIn(pair.ek, coins=bytes(32))]

    fine, refused = run(backend, Kind.KEM_ENCAPS, "ML-KEM-768", lanes)

    assert isinstance(fine, KemEncapsOut)
    assert isinstance(refused, InvalidInput)
    assert str(refused) == (
        "The OpenSSL backend cannot encapsulate with caller-given coins."
    )
    assert backend.deterministic is False


def test_signing_refusals_stay_in_their_lanes(backend):
    backend.load_signing_key(7, "ML-DSA-44", bytes(32))
    try:
        lanes = [
            SigSignIn(7, b"message"),
            SigSignIn(7, b"message", rnd=bytes(32)),
            SigSignIn(7, b"message", context=bytes(256)),
            SigSignIn(8, b"message"),
        ]
        results = run(backend, Kind.SIG_SIGN, "ML-DSA-44", lanes)
    finally:
        backend.drop_signing_key(7)

    assert len(results[0]) == SIG_PARAMS["ML-DSA-44"].sig_bytes
    assert [str(r) for r in results[1:]] == [
        "The OpenSSL backend cannot sign with caller-given rnd.",
        "The context must be at most 255 bytes long, but it is 256 bytes.",
        "No signing key is loaded in slot 8.",
    ]


def test_expanded_decapsulation_key_is_refused_per_lane(backend):
    spec, seed = KEM_PARAMS["ML-KEM-768"], bytes(64)
    ct = bytes(spec.ct_bytes)
    lanes = [KemDecapsIn(seed, ct), KemDecapsIn(bytes(spec.dk_bytes), ct)]

    secret, refused = run(backend, Kind.KEM_DECAPS, "ML-KEM-768", lanes)

    assert len(secret) == spec.ss_bytes
    assert str(refused) == (
        "The OpenSSL backend takes decapsulation keys in seed form only."
    )


def test_external_mu_round_trip_and_internal_mode_refused(backend):
    pk = backend.load_signing_key(9, "ML-DSA-87", bytes(range(32)))
    try:
        mu = bytes(range(64))
        signed = run(
            backend,
            Kind.SIG_SIGN,
            "ML-DSA-87",
            [SigSignIn(9, mu, mode="mu"), SigSignIn(9, b"M'", mode="internal")],
        )
    finally:
        backend.drop_signing_key(9)
    signature, refused = signed
    lanes = [
        SigVerifyIn(pk, mu, signature, mode="mu"),
        SigVerifyIn(pk, bytes(64), signature, mode="mu"),
    ]

    assert run(backend, Kind.SIG_VERIFY, "ML-DSA-87", lanes) == [True, False]
    assert (
        str(refused) == "The OpenSSL backend cannot sign or verify in 'internal' mode."
    )


def test_capabilities_and_description(backend):
    caps = backend.capabilities()
    assert {k.param for k in caps} == set(SIG_PARAMS) | {"ML-KEM-768", "ML-KEM-1024"}
    assert len(caps) == 5 * 3
    info = backend.describe()
    assert (info["name"], info["path"], info["threads"]) == ("openssl", "cpu", 2)
    assert info["library"].startswith("OpenSSL")
