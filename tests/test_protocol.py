"""pqc-hs/1 transcript and key schedule against the worked examples."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import mldsa, x25519

from service import protocol as pr
from tests.vectors import hexbytes, protocol_cases

CASES = protocol_cases()
SECRETS = [
    "PRK",
    "client_finished_key",
    "server_finished_key",
    "client_write_key",
    "server_write_key",
    "client_iv",
    "server_iv",
    "auth_key",
]


def _transcript(case: dict) -> tuple[pr.Suite, bytes, bytes, bytes, bytes]:
    suite = pr.SUITES[case["suite"]]
    ch = pr.client_hello(
        hexbytes(case["client_random"]),
        case["offered_suites"],
        hexbytes(case["client_x25519_share"]),
    )
    sh = pr.server_hello(
        case["handshake_id"],
        hexbytes(case["server_random"]),
        case["suite"],
        hexbytes(case["kem_public_key"]),
        hexbytes(case["server_x25519_share"]),
        case["signature_key_id"],
    )
    kx = pr.key_exchange(case["handshake_id"], hexbytes(case["kem_ciphertext"]))
    return suite, ch, sh, kx, hexbytes(case["signature"])


@pytest.mark.parametrize("case", CASES, ids=[c["suite"] for c in CASES])
def test_transcript_pieces(case: dict) -> None:
    _, ch, sh, kx, _ = _transcript(case)

    assert ch == hexbytes(case["CH"])
    assert sh == hexbytes(case["SH"])
    assert kx == hexbytes(case["KX"])


@pytest.mark.parametrize("case", CASES, ids=[c["suite"] for c in CASES])
def test_signature_and_key_id(case: dict) -> None:
    suite, ch, sh, _, signature = _transcript(case)
    public = hexbytes(case["signature_public_key"])
    derived = mldsa.MLDSA65PrivateKey.from_seed_bytes(hexbytes(case["signature_seed"]))

    assert derived.public_key().public_bytes_raw() == public
    key = mldsa.MLDSA65PublicKey.from_public_bytes(public)
    key.verify(signature, pr.signed_message(suite, ch, sh), pr.SIGNATURE_CONTEXT)


@pytest.mark.parametrize("case", CASES, ids=[c["suite"] for c in CASES])
def test_key_schedule(case: dict) -> None:
    suite, ch, sh, kx, signature = _transcript(case)
    th = pr.transcript_hash(suite, ch, sh, signature, kx)
    assert th == hexbytes(case["TH"])

    keys = pr.derive_keys(
        suite,
        hexbytes(case["IKM"]),
        hexbytes(case["client_random"]),
        hexbytes(case["server_random"]),
        th,
    )
    for name in SECRETS:
        assert getattr(keys, name.lower()) == hexbytes(case[name]), name

    client_vd = pr.client_verify_data(suite, keys, th)
    assert client_vd == hexbytes(case["client_verify_data"])
    server_vd = pr.server_verify_data(suite, keys, th, client_vd)
    assert server_vd == hexbytes(case["server_verify_data"])


@pytest.mark.parametrize("case", CASES, ids=[c["suite"] for c in CASES])
@pytest.mark.parametrize("label", ["session-verify", "session-delete"])
def test_session_macs(case: dict, label: str) -> None:
    suite = pr.SUITES[case["suite"]]
    example = case[label.replace("-", "_") + "_example"]

    mac = pr.session_mac(
        suite,
        hexbytes(case["auth_key"]),
        label,
        example["session_id"],
        example["timestamp"],
        hexbytes(example["nonce"]),
    )
    assert mac == hexbytes(example["mac"])


def test_hybrid_ikm_is_kem_then_x25519() -> None:
    (case,) = [c for c in CASES if pr.SUITES[c["suite"]].hybrid]
    client = x25519.X25519PrivateKey.from_private_bytes(
        hexbytes(case["client_x25519_private"])
    )
    server = x25519.X25519PrivateKey.from_private_bytes(
        hexbytes(case["server_x25519_private"])
    )
    assert client.public_key().public_bytes_raw() == hexbytes(
        case["client_x25519_share"]
    )

    secret = client.exchange(server.public_key())
    assert server.exchange(client.public_key()) == secret
    assert hexbytes(case["kem_shared_secret"]) + secret == hexbytes(case["IKM"])


def test_enc_is_length_prefixed() -> None:
    assert pr.enc(b"") == b"\x00\x00\x00\x00"
    assert pr.enc("ab") == b"\x00\x00\x00\x02ab"
    assert pr.enc(b"x" * 300)[:4] == (300).to_bytes(4, "big")


def test_hkdf_matches_rfc5869_case_1() -> None:
    # RFC 5869, Appendix A.1 (SHA-256), through a suite that uses SHA-256.
    suite = pr.SUITES["MLKEM512-MLDSA44-AES128GCM-SHA256"]
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")

    prk = pr.hkdf_extract(suite, salt, ikm)
    assert prk.hex() == (
        "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    )
    okm = pr.hkdf_expand(suite, prk, info, 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        "34007208d5b887185865"
    )


GOOD = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(
    "value",
    [
        GOOD[:-1],  # missing padding
        GOOD + "=",  # extra padding
        GOOD[:10] + " " + GOOD[10:-1],  # whitespace
        GOOD[:10] + "\n" + GOOD[10:-1],
        base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(),  # URL-safe alphabet
        "QR==",  # non-zero trailing bits ("QQ==" is canonical)
        "====",
        "",  # decodes to 0 bytes, not 32
        12,
        None,
    ],
    ids=[
        "missing-pad",
        "extra-pad",
        "space",
        "newline",
        "urlsafe",
        "trailing-bits",
        "only-pad",
        "empty",
        "int",
        "none",
    ],
)
def test_strict_base64_refuses(value: object) -> None:
    with pytest.raises(pr.ProtocolError) as info:
        pr.b64decode(value, "client_random", 32)
    assert info.value.code == "bad_request"


def test_strict_base64_accepts_canonical() -> None:
    assert pr.b64decode(GOOD, "client_random", 32) == bytes(range(32))
    assert pr.b64decode("QQ==", "x") == b"A"


def test_ids_are_22_base64url_chars() -> None:
    ident = pr.new_id(b"\xff" * 16)
    assert len(ident) == 22 and pr.check_id(ident, "id") == ident
    with pytest.raises(pr.ProtocolError):
        pr.check_id(ident + "=", "id")
