"""Parameter sets: derived sizes equal the published ones (FIPS 203/204)."""

from __future__ import annotations

import pytest

from engine import params as P
from engine.errors import UnsupportedParameterSet

# FIPS 203, Table 3: ek, dk, ct sizes in bytes.
KEM_SIZES = {
    "ML-KEM-512": (800, 1632, 768),
    "ML-KEM-768": (1184, 2400, 1088),
    "ML-KEM-1024": (1568, 3168, 1568),
}
# FIPS 204, Table 2: pk, sk, signature sizes in bytes.
SIG_SIZES = {
    "ML-DSA-44": (1312, 2560, 2420),
    "ML-DSA-65": (1952, 4032, 3309),
    "ML-DSA-87": (2592, 4896, 4627),
}


@pytest.mark.parametrize("name", list(KEM_SIZES))
def test_kem_sizes(name: str) -> None:
    spec = P.kem_params(name)
    assert (spec.ek_bytes, spec.dk_bytes, spec.ct_bytes) == KEM_SIZES[name]


@pytest.mark.parametrize("name", list(SIG_SIZES))
def test_sig_sizes(name: str) -> None:
    spec = P.sig_params(name)
    assert (spec.pk_bytes, spec.sk_bytes, spec.sig_bytes) == SIG_SIZES[name]


def test_unknown_names_are_refused() -> None:
    with pytest.raises(UnsupportedParameterSet, match="ML-KEM-768"):
        P.kem_params("Kyber768")
    with pytest.raises(UnsupportedParameterSet):
        P.sig_params("ML-DSA-99")


def test_sig_sets_are_numbered_as_their_fips_names() -> None:
    assert {name: p.number for name, p in P.SIG_PARAMS.items()} == {
        "ML-DSA-44": 44,
        "ML-DSA-65": 65,
        "ML-DSA-87": 87,
    }
