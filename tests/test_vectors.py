"""engine.vectors: every ACVP and Wycheproof file, per backend, and the CLI.

The backends are the OpenSSL one, liboqs and the device backend where they
exist, and the portable C kernels (kernels/ref) behind a small Backend of
this module's own: it honours coins and rnd and takes expanded keys and
every signing mode, so it runs every case the CPU libraries cannot, until
the device backend does the same.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from engine import params as P
from engine.backends.base import Backend
from engine.backends.openssl import OpenSSLBackend
from engine.errors import BackendUnavailable, InvalidInput
from engine.ops import KemEncapsOut, KemKeyPair, Kind, OpKey, SigKeyPair
from engine.vectors import (
    ACCEPTED,
    LONG_PREHASH_CONTEXT,
    REFUSED,
    VectorFileError,
    backend_by_name,
    equal,
    hash_ml_dsa_message,
    judge,
    load_file,
    run_files,
    verify,
)
from service.cli import main
from tests.kernel_build import REF_SOURCES, build_kernels

VECTORS = Path(__file__).parent / "vectors"
ACVP = VECTORS / "acvp"
WYCHEPROOF = VECTORS / "wycheproof"
KEM_KEYGEN = ACVP / "ML-KEM-keyGen-FIPS203" / "internalProjection.json"
SIG_GEN = ACVP / "ML-DSA-sigGen-FIPS204" / "prompt.json"
SIG_VER = ACVP / "ML-DSA-sigVer-FIPS204" / "internalProjection.json"

# Every vector file, and (cases, passed on OpenSSL, skipped on OpenSSL). The
# OpenSSL skips are its documented limits: no ML-KEM-512, no caller-given
# coins or rnd, no expanded dk or sk, no internal mode (engine.vectors).
FILES = {
    "acvp/ML-KEM-keyGen-FIPS203/internalProjection.json": (75, 50, 25),
    "acvp/ML-KEM-encapDecap-FIPS203/internalProjection.json": (165, 20, 145),
    "acvp/ML-DSA-keyGen-FIPS204/internalProjection.json": (75, 75, 0),
    "acvp/ML-DSA-sigGen-FIPS204/prompt.json": (360, 0, 360),
    "acvp/ML-DSA-sigVer-FIPS204/internalProjection.json": (180, 90, 90),
    "wycheproof/mlkem_768_test.json": (193, 193, 0),
    "wycheproof/mlkem_768_encaps_test.json": (265, 132, 133),
    "wycheproof/mlkem_768_keygen_seed_test.json": (100, 100, 0),
    "wycheproof/mlkem_768_semi_expanded_decaps_test.json": (9, 0, 9),
    "wycheproof/mldsa_65_sign_seed_test.json": (105, 4, 101),
    "wycheproof/mldsa_65_sign_noseed_test.json": (78, 0, 78),
    "wycheproof/mldsa_65_verify_test.json": (210, 210, 0),
}


# -- the portable C kernels as a backend ----------------------------------

KERNEL_CDEF = """
size_t mlkem_ek_bytes(unsigned k);
int mlkem_keygen(unsigned k, uint8_t *ek, uint8_t *dk, const uint8_t seed[64]);
int mlkem_encaps(unsigned k, uint8_t *ct, uint8_t ss[32], const uint8_t *ek,
                 const uint8_t m[32]);
int mlkem_decaps(unsigned k, uint8_t ss[32], const uint8_t *ct,
                 const uint8_t *dk);
int mlkem_decaps_seed(unsigned k, uint8_t ss[32], const uint8_t *ct,
                      const uint8_t seed[64]);
int mldsa_keygen(unsigned ps, uint8_t *pk, uint8_t *sk, const uint8_t xi[32]);
int mldsa_sign_internal(unsigned ps, uint8_t *sig, const uint8_t *sk,
                        const uint8_t *mprime, size_t mlen,
                        const uint8_t rnd[32]);
int mldsa_sign_mu(unsigned ps, uint8_t *sig, const uint8_t *sk,
                  const uint8_t mu[64], const uint8_t rnd[32]);
int mldsa_sign(unsigned ps, uint8_t *sig, const uint8_t *sk,
               const uint8_t *msg, size_t mlen, const uint8_t *ctx,
               size_t ctxlen, const uint8_t rnd[32]);
int mldsa_verify_internal(unsigned ps, const uint8_t *pk,
                          const uint8_t *mprime, size_t mlen,
                          const uint8_t *sig, size_t siglen);
int mldsa_verify_mu(unsigned ps, const uint8_t *pk, const uint8_t mu[64],
                    const uint8_t *sig, size_t siglen);
int mldsa_verify(unsigned ps, const uint8_t *pk, const uint8_t *msg,
                 size_t mlen, const uint8_t *ctx, size_t ctxlen,
                 const uint8_t *sig, size_t siglen);
"""
KERNEL_SOURCES = REF_SOURCES
KERNEL_HEADERS = ["pqc_status.h", "mlkem.h", "mldsa.h"]
PQC_ERR_INVALID_SIGNATURE = -4


class RefKernelBackend(Backend):
    """kernels/ref, one lane at a time: deterministic, every key form and mode."""

    name = "ref-kernels"
    deterministic = True

    def __init__(self) -> None:
        module = build_kernels("_test_vectors_ref", KERNEL_CDEF, KERNEL_SOURCES,
                               KERNEL_HEADERS)  # fmt: skip
        self.ffi, self.lib = module.ffi, module.lib
        self.slots: dict[int, tuple[str, bytes]] = {}
        self.loads = 0
        kems = {OpKey(k, p) for k in Kind if k.is_kem for p in P.KEM_PARAMS}
        sigs = {OpKey(k, p) for k in Kind if not k.is_kem for p in P.SIG_PARAMS}
        self._caps = frozenset(kems | sigs)

    def capabilities(self) -> frozenset[OpKey]:
        return self._caps

    def run_batch(self, key: OpKey, lanes: Sequence[tuple]) -> list[object]:
        fn = getattr(self, "_" + key.kind.value)
        out: list[object] = []
        for lane in lanes:
            try:
                out.append(fn(key.param, lane))
            except InvalidInput as exc:
                out.append(exc)
        return out

    def load_signing_key(self, slot: int, param: str, seed: bytes) -> bytes:
        spec = P.sig_params(param)
        self.loads += 1
        if len(seed) == spec.sk_bytes:
            self.slots[slot] = (param, seed)
            return b""  # an expanded sk does not hold pk
        pk, sk = self._sig_keys(spec, _sized("seed", seed, P.SIG_SEED_BYTES))
        self.slots[slot] = (param, sk)
        return pk

    def drop_signing_key(self, slot: int) -> None:
        self.slots.pop(slot, None)

    def _buf(self, size: int):
        return self.ffi.new("uint8_t[]", size)

    def _kem_keygen(self, param: str, lane: tuple) -> KemKeyPair:
        spec = P.kem_params(param)
        ek, dk = self._buf(spec.ek_bytes), self._buf(spec.dk_bytes)
        _ok(self.lib.mlkem_keygen(spec.k, ek, dk, _sized("seed", lane.seed, 64)))
        return KemKeyPair(bytes(ek), lane.seed)

    def _kem_encaps(self, param: str, lane: tuple) -> KemEncapsOut:
        spec = P.kem_params(param)
        ct, ss = self._buf(spec.ct_bytes), self._buf(32)
        ek = _sized("ek", lane.ek, spec.ek_bytes)
        coins = lane.coins if lane.coins is not None else os.urandom(32)
        _ok(self.lib.mlkem_encaps(spec.k, ct, ss, ek, _sized("m", coins, 32)))
        return KemEncapsOut(bytes(ct), bytes(ss))

    def _kem_decaps(self, param: str, lane: tuple) -> bytes:
        spec = P.kem_params(param)
        ss, ct = self._buf(32), _sized("ct", lane.ct, spec.ct_bytes)
        if len(lane.dk) == P.KEM_SEED_BYTES:
            _ok(self.lib.mlkem_decaps_seed(spec.k, ss, ct, lane.dk))
        else:
            dk = _sized("dk", lane.dk, spec.dk_bytes)
            _ok(self.lib.mlkem_decaps(spec.k, ss, ct, dk))
        return bytes(ss)

    def _sig_keys(self, spec: P.SigParams, seed: bytes) -> tuple[bytes, bytes]:
        pk, sk = self._buf(spec.pk_bytes), self._buf(spec.sk_bytes)
        _ok(self.lib.mldsa_keygen(spec.number, pk, sk, seed))
        return bytes(pk), bytes(sk)

    def _sig_keygen(self, param: str, lane: tuple) -> SigKeyPair:
        seed = _sized("seed", lane.seed, P.SIG_SEED_BYTES)
        return SigKeyPair(self._sig_keys(P.sig_params(param), seed)[0], seed)

    def _sig_sign(self, param: str, lane: tuple) -> bytes:
        spec = P.sig_params(param)
        _, sk = self.slots[lane.slot]
        sig, msg, ps = self._buf(spec.sig_bytes), lane.message, spec.number
        rnd = lane.rnd if lane.rnd is not None else os.urandom(32)
        if lane.mode == "pure":
            ctx = lane.context
            _ok(self.lib.mldsa_sign(ps, sig, sk, msg, len(msg), ctx, len(ctx), rnd))
        elif lane.mode == "internal":
            _ok(self.lib.mldsa_sign_internal(ps, sig, sk, msg, len(msg), rnd))
        else:
            _ok(self.lib.mldsa_sign_mu(ps, sig, sk, _sized("mu", msg, 64), rnd))
        return bytes(sig)

    def _sig_verify(self, param: str, lane: tuple) -> bool:
        spec = P.sig_params(param)
        pk, ps = _sized("pk", lane.pk, spec.pk_bytes), spec.number
        msg, ctx, sig = lane.message, lane.context, lane.signature
        if lane.mode == "pure":
            args = (msg, len(msg), ctx, len(ctx), sig, len(sig))
            status = self.lib.mldsa_verify(ps, pk, *args)
        elif lane.mode == "internal":
            status = self.lib.mldsa_verify_internal(
                ps, pk, msg, len(msg), sig, len(sig)
            )
        else:
            mu = _sized("mu", msg, 64)
            status = self.lib.mldsa_verify_mu(ps, pk, mu, sig, len(sig))
        if status == PQC_ERR_INVALID_SIGNATURE:
            return False
        _ok(status)
        return True


def _sized(what: str, value: bytes, size: int) -> bytes:
    if len(value) != size:
        raise InvalidInput(f"The {what} must be {size} bytes, not {len(value)}.")
    return value


def _ok(status: int) -> None:
    if status != 0:
        raise InvalidInput(f"The kernel refused the input (status {status}).")


# -- backends --------------------------------------------------------------


def _device_backend() -> Backend:
    if importlib.util.find_spec("engine.backends.device") is None:
        pytest.skip("device backend not built (engine/backends/device.py is absent)")
    try:
        return backend_by_name("device")
    except BackendUnavailable as exc:
        pytest.skip(f"device backend unavailable: {exc}")


def _liboqs_backend() -> Backend:
    try:
        return backend_by_name("liboqs")
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


_BACKENDS = {
    "openssl": lambda: backend_by_name("openssl"),
    "liboqs": _liboqs_backend,
    "device": _device_backend,
    "ref-kernels": RefKernelBackend,
}


@pytest.fixture(scope="module", params=list(_BACKENDS))
def backend(request) -> Iterator[Backend]:
    made = _BACKENDS[request.param]()
    yield made
    made.close()


@pytest.fixture(scope="module")
def ref_backend() -> RefKernelBackend:
    return RefKernelBackend()


def _failures(report) -> str:
    return "\n".join(f"tcId {f.test_id}: {f.reason}" for f in report.failures[:20])


# -- every file on every backend -------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(FILES))
def test_vector_file(backend: Backend, name: str) -> None:
    cases, passed, skipped = FILES[name]
    report = run_files([VECTORS / name], backend, batch=64)
    total = report.total

    assert report.ok, _failures(report)
    assert total.passed + total.skipped == cases
    if backend.name == "openssl":
        assert (total.passed, total.skipped) == (passed, skipped), total.skip_reasons
    elif backend.name in ("device", "ref-kernels"):
        # Deterministic, every key form and mode: nothing may be skipped.
        assert total.skipped == 0, total.skip_reasons
    else:
        assert total.passed > 0


def test_openssl_skip_reasons_are_counted() -> None:
    backend = OpenSSLBackend()
    try:
        report = run_files([KEM_KEYGEN], backend)
    finally:
        backend.close()

    file_report = report.files[str(KEM_KEYGEN)]
    assert file_report.total.skip_reasons == Counter(
        {"ML-KEM-512 kem_keygen is not served by the openssl backend": 25}
    )
    assert [t.passed for t in file_report.groups.values()] == [0, 25, 25]
    assert "tg 1 ML-KEM-512" in file_report.groups


# -- the loader ----------------------------------------------------------


def test_file_type_comes_from_content(tmp_path) -> None:
    renamed = tmp_path / "mlkem_768_test.json"  # a Wycheproof name, ACVP content
    shutil.copy(KEM_KEYGEN, renamed)

    vectors = load_file(renamed)

    assert vectors.kind == "ACVP ML-KEM keyGen"
    assert len(vectors.cases) == 75
    assert {c.param for c in vectors.cases} == set(P.KEM_PARAMS)


@pytest.mark.parametrize(
    "document",
    [
        {"hello": "world"},
        {"algorithm": "ML-KEM", "testGroups": [{"tests": []}]},
        [1, 2, 3],
    ],
    ids=["unrelated", "no-mode-or-schema", "list"],
)
def test_unknown_json_is_refused(tmp_path, document) -> None:
    path = tmp_path / "unknown.json"
    path.write_text(json.dumps(document))

    with pytest.raises(VectorFileError, match="is neither ACVP nor Wycheproof"):
        load_file(path)


def test_unsupported_acvp_mode_and_wycheproof_type_are_named(tmp_path) -> None:
    acvp = tmp_path / "acvp.json"
    acvp.write_text(json.dumps({
        "algorithm": "ML-KEM", "mode": "sigGen", "revision": "FIPS203",
        "testGroups": [],
    }))  # fmt: skip
    wycheproof = tmp_path / "wycheproof.json"
    wycheproof.write_text(json.dumps({
        "algorithm": "EDDSA", "schema": "eddsa_verify_schema.json",
        "testGroups": [{"type": "EddsaVerify", "tests": []}],
    }))  # fmt: skip

    with pytest.raises(VectorFileError, match="ACVP ML-KEM sigGen is not supported"):
        load_file(acvp)
    with pytest.raises(VectorFileError, match="'EddsaVerify' is not supported"):
        load_file(wycheproof)


def test_expected_results_alone_and_missing_are_explained(tmp_path) -> None:
    with pytest.raises(VectorFileError, match="expected results only"):
        load_file(SIG_GEN.with_name("expectedResults.json"))

    lonely = tmp_path / "prompt.json"
    shutil.copy(SIG_GEN, lonely)
    with pytest.raises(VectorFileError, match=r"no expectedResults\.json beside it"):
        load_file(lonely)


def test_sig_gen_prompt_is_joined_with_its_results() -> None:
    vectors = load_file(SIG_GEN)
    results = json.loads(SIG_GEN.with_name("expectedResults.json").read_text())
    first = results["testGroups"][0]["tests"][0]

    case = next(c for c in vectors.cases if c.test_id == first["tcId"])
    (step,) = case.steps
    assert step.expect == equal(("", bytes.fromhex(first["signature"])))
    assert step.op == OpKey(Kind.SIG_SIGN, "ML-DSA-44")
    assert len(step.key.material) == P.ML_DSA_44.sk_bytes


def test_signing_modes_follow_the_group() -> None:
    modes = Counter(
        (case.group_label.split(" ", 3)[-1], case.steps[0].lane.mode)
        for case in load_file(SIG_GEN).cases
    )
    assert modes == {
        ("external pure deterministic", "pure"): 45,
        ("external preHash deterministic", "internal"): 45,
        ("internal externalMu deterministic", "mu"): 45,
        ("internal deterministic", "internal"): 45,
        ("external pure hedged", "pure"): 45,
        ("external preHash hedged", "internal"): 45,
        ("internal externalMu hedged", "mu"): 45,
        ("internal hedged", "internal"): 45,
    }


def test_long_prehash_context_is_skipped_on_every_backend(tmp_path) -> None:
    doc = json.loads(SIG_VER.read_text())
    group = next(g for g in doc["testGroups"] if g["preHash"] == "preHash")
    group["tests"] = group["tests"][:1]
    group["tests"][0]["context"] = "AB" * 256
    doc["testGroups"] = [group]
    path = tmp_path / "long-context.json"
    path.write_text(json.dumps(doc))

    (case,) = load_file(path).cases
    assert case.skip == LONG_PREHASH_CONTEXT and case.steps == ()
    backend = OpenSSLBackend(threads=1)
    report = run_files([path], backend)
    backend.close()
    assert report.total.skip_reasons == {LONG_PREHASH_CONTEXT: 1}


# -- HashML-DSA and verdicts ----------------------------------------------


def test_hash_ml_dsa_message_layout() -> None:
    message, context = b"abc", b"\x07" * 3
    m_prime = hash_ml_dsa_message(message, context, "SHA2-256")

    oid = bytes.fromhex("0609608648016503040201")  # id-sha256
    assert m_prime == b"\x01\x03" + context + oid + hashlib.sha256(message).digest()


@pytest.mark.parametrize(
    ("hash_alg", "oid_byte", "digest_bytes"),
    [
        ("SHA2-224", 0x04, 28), ("SHA2-256", 0x01, 32), ("SHA2-384", 0x02, 48),
        ("SHA2-512", 0x03, 64), ("SHA2-512/224", 0x05, 28),
        ("SHA2-512/256", 0x06, 32), ("SHA3-224", 0x07, 28),
        ("SHA3-256", 0x08, 32), ("SHA3-384", 0x09, 48), ("SHA3-512", 0x0A, 64),
        ("SHAKE-128", 0x0B, 32), ("SHAKE-256", 0x0C, 64),
    ],
)  # fmt: skip
def test_hash_ml_dsa_oids_and_digests(hash_alg, oid_byte, digest_bytes) -> None:
    m_prime = hash_ml_dsa_message(b"", b"", hash_alg)

    assert m_prime[:2] == b"\x01\x00"
    assert m_prime[2:13] == bytes.fromhex("06096086480165030402") + bytes([oid_byte])
    assert len(m_prime) == 13 + digest_bytes


def test_hash_ml_dsa_refuses_unknown_hash_and_long_context() -> None:
    with pytest.raises(VectorFileError, match="'MD5' is not a FIPS 204"):
        hash_ml_dsa_message(b"", b"", "MD5")
    with pytest.raises(ValueError, match="256 bytes"):
        hash_ml_dsa_message(b"", bytes(256), "SHA2-256")


def test_judge() -> None:
    refusal = InvalidInput("The key is not valid.")

    assert judge(REFUSED, refusal) is None
    assert "must be refused" in judge(REFUSED, b"\x00")
    assert judge(ACCEPTED, KemEncapsOut(b"c", b"k")) is None
    assert "refused the input" in judge(ACCEPTED, refusal)
    assert judge(verify(False), refusal) is None  # refusing to verify is "no"
    assert judge(verify(False), False) is None
    assert "gave True" in judge(verify(False), True)
    assert "refused the input" in judge(verify(True), refusal)
    assert judge(equal(("ek", b"e"), ("dk", b"d"), optional=["dk"]),
                 KemKeyPair(b"e", b"s")) is None  # fmt: skip
    assert judge(equal(("ss", b"k")), KemEncapsOut(b"c", b"x")) == (
        "ss differs from the expected value"
    )


# -- batching and key slots -----------------------------------------------


class CountingOpenSSL(OpenSSLBackend):
    """The OpenSSL backend, recording the size of every batch it is given."""

    def __init__(self) -> None:
        super().__init__(threads=2)
        self.batches: list[tuple[OpKey, int]] = []

    def run_batch(self, key: OpKey, lanes: Sequence[tuple]) -> list[object]:
        self.batches.append((key, len(lanes)))
        return super().run_batch(key, lanes)


def test_lanes_are_batched_per_op_key() -> None:
    backend = CountingOpenSSL()
    files = [KEM_KEYGEN, WYCHEPROOF / "mlkem_768_keygen_seed_test.json"]
    try:
        report = run_files(files, backend, batch=7)
    finally:
        backend.close()

    assert report.ok and report.total.passed == 150
    sizes = [n for key, n in backend.batches]
    keys = [key for key, n in backend.batches]
    # 125 ML-KEM-768 keygens (two files in one queue) and 25 ML-KEM-1024.
    assert sizes == [7] * 17 + [6] + [7] * 3 + [4]
    assert (
        keys
        == [OpKey(Kind.KEM_KEYGEN, "ML-KEM-768")] * 18
        + [OpKey(Kind.KEM_KEYGEN, "ML-KEM-1024")] * 4
    )


def test_signing_keys_load_once_and_are_dropped(ref_backend) -> None:
    ref_backend.loads = 0
    path = WYCHEPROOF / "mldsa_65_sign_seed_test.json"
    report = run_files([path], ref_backend, batch=5)

    assert report.ok, _failures(report)
    seeds = {g["privateSeed"] for g in json.loads(path.read_text())["testGroups"]}
    assert ref_backend.loads == len(seeds)
    assert ref_backend.slots == {}


def test_batch_must_be_positive() -> None:
    backend = OpenSSLBackend(threads=1)
    with pytest.raises(ValueError, match="positive"):
        run_files([], backend, batch=0)
    backend.close()


# -- the CLI ---------------------------------------------------------------


def test_cli_prints_the_table_and_exits_0(capsys) -> None:
    code = main(["vectors", str(KEM_KEYGEN), "--backend", "openssl", "--batch", "16"])
    out = capsys.readouterr().out

    assert code == 0
    assert "passed  failed  skipped" in out
    assert "tg 2 ML-KEM-768" in out
    assert "skipped 25: ML-KEM-512 kem_keygen is not served" in out
    assert "All files: 50 passed, 0 failed, 25 skipped." in out


def _flip_first_byte(value: str) -> str:
    return f"{int(value[:2], 16) ^ 0x01:02X}" + value[2:]


def test_cli_fails_on_a_corrupted_file(tmp_path, capsys) -> None:
    doc = json.loads(KEM_KEYGEN.read_text())
    test = doc["testGroups"][1]["tests"][4]  # an ML-KEM-768 case
    test["ek"] = _flip_first_byte(test["ek"])
    corrupted = tmp_path / "corrupted.json"
    corrupted.write_text(json.dumps(doc))

    code = main(["vectors", str(corrupted), "--backend", "openssl"])
    out = capsys.readouterr().out

    assert code == 1
    assert f"tcId {test['tcId']}: ek differs from the expected value" in out
    assert "All files: 49 passed, 1 failed, 25 skipped." in out


def test_corrupted_signature_in_expected_results_fails(tmp_path, ref_backend):
    folder = tmp_path / "sigGen"
    folder.mkdir()
    shutil.copy(SIG_GEN, folder / "prompt.json")
    results = json.loads(SIG_GEN.with_name("expectedResults.json").read_text())
    test = results["testGroups"][15]["tests"][3]  # tg 16: ML-DSA-65 preHash
    test["signature"] = _flip_first_byte(test["signature"])
    (folder / "expectedResults.json").write_text(json.dumps(results))

    report = run_files([folder / "prompt.json"], ref_backend)

    assert [(f.test_id, f.reason) for f in report.failures] == [
        (test["tcId"], "the output differs from the expected value")
    ]
    assert f"tcId {test['tcId']}: the output differs" in report.render()


def test_cli_unknown_file_and_missing_backend_exit_2(tmp_path, capsys) -> None:
    path = tmp_path / "unknown.json"
    path.write_text("{}")

    assert main(["vectors", str(path)]) == 2
    assert "neither ACVP nor Wycheproof" in capsys.readouterr().err
    if importlib.util.find_spec("engine.backends.device") is None:
        assert main(["vectors", str(KEM_KEYGEN), "--backend", "device"]) == 2
        err = capsys.readouterr().err
        assert "The device backend is not built into this installation." in err


def test_cli_help(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["vectors", "--help"])
    assert info.value.code == 0
    assert "--batch" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_file_passes_singly_on_the_device() -> None:
    """The device path again, one lane per batch: singly and in batches agree."""
    device = _BACKENDS["device"]()
    try:
        report = run_files([VECTORS / name for name in FILES], device, batch=1)
    finally:
        device.close()

    assert report.ok, _failures(report)
    assert report.total.skipped == 0, report.total.skip_reasons
    assert report.total.passed == sum(cases for cases, _, _ in FILES.values())
