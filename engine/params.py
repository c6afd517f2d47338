"""Parameter sets: one frozen record per FIPS name, the single source of truth.

Sizes follow FIPS 203 (Table 2 and 3) and FIPS 204 (Table 1 and 2); the
derived ones are computed from the base constants and checked against the
published byte counts in ``tests/test_params.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import UnsupportedParameterSet

KEM_SEED_BYTES = 64  # d || z, FIPS 203 section 7.1
KEM_COINS_BYTES = 32  # m, FIPS 203 Algorithm 20
KEM_SHARED_SECRET_BYTES = 32
SIG_SEED_BYTES = 32  # xi, FIPS 204 Algorithm 1
SIG_RND_BYTES = 32  # rnd, FIPS 204 Algorithm 2
SIG_MAX_CONTEXT_BYTES = 255  # FIPS 204 Algorithm 2, step 1


@dataclass(frozen=True)
class KemParams:
    """An ML-KEM parameter set (FIPS 203, Table 2)."""

    name: str
    k: int
    eta1: int
    eta2: int
    du: int
    dv: int

    @property
    def ek_bytes(self) -> int:
        return 384 * self.k + 32

    @property
    def dk_bytes(self) -> int:
        return 768 * self.k + 96

    @property
    def ct_bytes(self) -> int:
        return 32 * (self.du * self.k + self.dv)

    @property
    def seed_bytes(self) -> int:
        return KEM_SEED_BYTES

    @property
    def ss_bytes(self) -> int:
        return KEM_SHARED_SECRET_BYTES


@dataclass(frozen=True)
class SigParams:
    """An ML-DSA parameter set (FIPS 204, Table 1)."""

    name: str
    k: int
    l: int  # noqa: E741 - the standard's name
    eta: int
    tau: int
    gamma1_bits: int
    gamma2_divisor: int  # gamma2 = (q - 1) / divisor
    omega: int
    lam: int  # collision strength lambda, in bits

    @property
    def number(self) -> int:
        """The number in the set's FIPS name (44, 65, 87): how the kernels
        name it."""
        return int(self.name.rsplit("-", 1)[1])

    @property
    def d(self) -> int:
        return 13

    @property
    def pk_bytes(self) -> int:
        # rho || t1 with 10-bit coefficients: 32 + 320 k (FIPS 204 Algorithm 22)
        return 32 + 320 * self.k

    @property
    def sk_bytes(self) -> int:
        # rho || K || tr || s1 || s2 || t0 (FIPS 204 Algorithm 24)
        eta_bits = 3 if self.eta == 2 else 4
        return 128 + 32 * eta_bits * (self.k + self.l) + 32 * self.d * self.k

    @property
    def sig_bytes(self) -> int:
        # c~ || z || h (FIPS 204 Algorithm 26)
        z_bits = self.gamma1_bits + 1
        return self.lam // 4 + 32 * z_bits * self.l + self.omega + self.k

    @property
    def seed_bytes(self) -> int:
        return SIG_SEED_BYTES


ML_KEM_512 = KemParams("ML-KEM-512", k=2, eta1=3, eta2=2, du=10, dv=4)
ML_KEM_768 = KemParams("ML-KEM-768", k=3, eta1=2, eta2=2, du=10, dv=4)
ML_KEM_1024 = KemParams("ML-KEM-1024", k=4, eta1=2, eta2=2, du=11, dv=5)

ML_DSA_44 = SigParams(
    "ML-DSA-44", k=4, l=4, eta=2, tau=39, gamma1_bits=17, gamma2_divisor=88,
    omega=80, lam=128,
)  # fmt: skip
ML_DSA_65 = SigParams(
    "ML-DSA-65", k=6, l=5, eta=4, tau=49, gamma1_bits=19, gamma2_divisor=32,
    omega=55, lam=192,
)  # fmt: skip
ML_DSA_87 = SigParams(
    "ML-DSA-87", k=8, l=7, eta=2, tau=60, gamma1_bits=19, gamma2_divisor=32,
    omega=75, lam=256,
)  # fmt: skip

KEM_PARAMS: dict[str, KemParams] = {
    p.name: p for p in (ML_KEM_512, ML_KEM_768, ML_KEM_1024)
}
SIG_PARAMS: dict[str, SigParams] = {
    p.name: p for p in (ML_DSA_44, ML_DSA_65, ML_DSA_87)
}


def kem_params(name: str) -> KemParams:
    """Return the ML-KEM parameter set called ``name`` (e.g. "ML-KEM-768")."""
    try:
        return KEM_PARAMS[name]
    except KeyError:
        raise UnsupportedParameterSet(
            f"{name!r} is not an ML-KEM parameter set; expected one of "
            f"{', '.join(KEM_PARAMS)}."
        ) from None


def sig_params(name: str) -> SigParams:
    """Return the ML-DSA parameter set called ``name`` (e.g. "ML-DSA-65")."""
    try:
        return SIG_PARAMS[name]
    except KeyError:
        raise UnsupportedParameterSet(
            f"{name!r} is not an ML-DSA parameter set; expected one of "
            f"{', '.join(SIG_PARAMS)}."
        ) from None
