"""The client SDK's two public-key operations, on both of their paths.

The SDK verifies the server hello and encapsulates with the kernels when
they are built and with OpenSSL otherwise; each path is checked here
against keys, signatures and ciphertexts made by the other library.
"""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem

from service import client
from service.client import HandshakeError
from service.protocol import SIGNATURE_CONTEXT

VERIFIERS = [client._kernel_verify, client._openssl_verify]
ENCAPSULATORS = [client._kernel_encapsulate, client._openssl_encapsulate]


@pytest.fixture(scope="module")
def signed() -> tuple[bytes, bytes, bytes]:
    """(public key, message, signature) made by OpenSSL."""
    key = mldsa.MLDSA65PrivateKey.from_seed_bytes(os.urandom(32))
    message = b"CH || SH of some handshake"
    signature = key.sign(message, SIGNATURE_CONTEXT)
    return key.public_key().public_bytes_raw(), message, signature


@pytest.mark.parametrize("verify", VERIFIERS)
def test_a_good_signature_verifies(verify, signed) -> None:
    pk, message, signature = signed

    assert verify("ML-DSA-65", pk, signature, message) is True


@pytest.mark.parametrize("verify", VERIFIERS)
def test_tampering_anywhere_fails(verify, signed) -> None:
    pk, message, signature = signed
    flipped = bytes([signature[100] ^ 1])

    assert not verify("ML-DSA-65", pk, signature, message + b"!")
    assert not verify(
        "ML-DSA-65", pk, signature[:100] + flipped + signature[101:], message
    )
    assert not verify("ML-DSA-65", pk, signature[:-1], message)
    assert not verify("ML-DSA-65", pk[:-1], signature, message)
    assert not verify("ML-DSA-44", pk, signature, message)


@pytest.mark.parametrize("encapsulate", ENCAPSULATORS)
def test_encapsulation_decapsulates_in_openssl(encapsulate) -> None:
    key = mlkem.MLKEM768PrivateKey.from_seed_bytes(os.urandom(64))
    ek = key.public_key().public_bytes_raw()

    shared, ciphertext = encapsulate("ML-KEM-768", ek)

    assert len(ciphertext) == 1088 and len(shared) == 32
    assert key.decapsulate(ciphertext) == shared


@pytest.mark.parametrize("encapsulate", ENCAPSULATORS)
def test_a_short_key_is_refused(encapsulate) -> None:
    with pytest.raises(ValueError):
        encapsulate("ML-KEM-768", bytes(1183))


def test_openssl_path_cannot_serve_mlkem512() -> None:
    with pytest.raises(HandshakeError, match="kernel extension"):
        client._openssl_encapsulate("ML-KEM-512", bytes(800))


# -- malformed answers are refused as HandshakeError ---------------------------


@pytest.fixture
def pinned() -> dict:
    key = mldsa.MLDSA65PrivateKey.from_seed_bytes(bytes(32))
    public = key.public_key().public_bytes_raw()
    return {"k1": client.PinnedKey("k1", "ML-DSA-65", public)}


HELLO_OK = {
    "handshake_id": "A" * 22,
    "server_random": "A" * 44,
    "suite": "MLKEM768-MLDSA65-AES256GCM-SHA384",
    "kem_public_key": "AAAA",
    "x25519_share": None,
    "signature_key_id": "k1",
    "signature": "AAAA",
}


@pytest.mark.parametrize(
    "hello",
    [
        [],
        None,
        "text",
        {**HELLO_OK, "signature_key_id": []},
        {**HELLO_OK, "handshake_id": 7},
        {**HELLO_OK, "handshake_id": "\ud800"},
        {k: v for k, v in HELLO_OK.items() if k != "kem_public_key"},
        {**HELLO_OK, "signature": "not base64!"},
        {**HELLO_OK, "server_random": "AAAA"},
    ],
)
def test_a_malformed_hello_is_a_handshake_error(pinned, hello) -> None:
    state = client.ClientHandshake(["MLKEM768-MLDSA65-AES256GCM-SHA384"], pinned)

    with pytest.raises(HandshakeError):
        state.key_exchange_request(hello)


@pytest.mark.parametrize("answer", [[], {}, {"server_verify_data": 5}])
def test_a_malformed_key_exchange_answer_is_a_handshake_error(pinned, answer) -> None:
    state = client.ClientHandshake(["MLKEM768-MLDSA65-AES256GCM-SHA384"], pinned)

    with pytest.raises(HandshakeError):
        state.finish(answer)


@pytest.mark.parametrize(
    "document",
    ["x", {"signature_keys": [{}]}, {"signature_keys": [{"public_key": 5}]}],
)
def test_a_malformed_keys_document_is_a_handshake_error(document) -> None:
    with pytest.raises(HandshakeError):
        client.pins_from_document(document)
