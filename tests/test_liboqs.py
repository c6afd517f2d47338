"""The liboqs backend: absent here, so it must decline cleanly.

liboqs-python downloads and builds liboqs when imported on a host without
the shared library, so ``engine.backends.liboqs`` may import ``oqs`` only
after ``find_liboqs`` found the library. The tests that need liboqs itself
run only where it is installed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import BackendUnavailable, Engine, EngineConfig
from engine.backends.liboqs import LiboqsBackend, find_liboqs
from engine.backends.openssl import OpenSSLBackend
from engine.ops import KemDecapsIn, KemEncapsIn, KemKeygenIn, Kind, OpKey, SigVerifyIn
from engine.selftest import run_selftests
from tests.vectors import hexbytes, load

pytestmark = pytest.mark.timeout(60)

NOT_FOUND = "liboqs shared library not found on this host"
HAS_LIBOQS = find_liboqs() is not None
needs_liboqs = pytest.mark.skipif(not HAS_LIBOQS, reason=NOT_FOUND)
without_liboqs = pytest.mark.skipif(
    HAS_LIBOQS, reason="liboqs is installed on this host, so it is not absent."
)


@pytest.fixture
def bare_home(monkeypatch, tmp_path):
    """No OQS_INSTALL_PATH and an empty home: only the system path is left."""
    monkeypatch.delenv("OQS_INSTALL_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


# -- on a host without liboqs ----------------------------------------------


# Run in a fresh interpreter, where ``oqs`` cannot already be imported: a
# finder at the head of sys.meta_path sees every import that is attempted.
WATCH_IMPORTS = """
import sys

attempted = []


class Watch:
    def find_spec(self, name, path=None, target=None):
        attempted.append(name)
        return None


sys.meta_path.insert(0, Watch())
import engine.backends.liboqs as module

if module.find_liboqs() is None:
    try:
        module.LiboqsBackend()
    except module.BackendUnavailable:
        pass
print(sorted({n for n in attempted if n.split(".")[0] == "oqs"}))
"""


def test_importing_the_backend_never_imports_oqs():
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", WATCH_IMPORTS],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    assert done.stdout.strip() == "[]"
    assert "oqs" not in sys.modules


@without_liboqs
def test_missing_library_is_backend_unavailable(bare_home):
    assert find_liboqs() is None

    with pytest.raises(BackendUnavailable) as caught:
        LiboqsBackend()

    assert caught.value.retryable is True
    assert str(caught.value) == (
        "The liboqs shared library was not found (set OQS_INSTALL_PATH or "
        "install liboqs); the liboqs backend is not available."
    )
    assert "oqs" not in sys.modules


@pytest.mark.parametrize("sub", ["lib", "lib64"])
def test_find_liboqs_looks_under_oqs_install_path(monkeypatch, tmp_path, sub):
    library = tmp_path / "oqs" / sub / "liboqs.so.7"
    library.parent.mkdir(parents=True)
    library.write_bytes(b"")  # found by name only; never loaded here
    monkeypatch.setenv("OQS_INSTALL_PATH", str(tmp_path / "oqs"))

    assert find_liboqs() == str(library)


def test_find_liboqs_looks_under_home(bare_home):
    library = bare_home / "_oqs" / "lib" / "liboqs.so"
    library.parent.mkdir(parents=True)
    library.write_bytes(b"")

    assert find_liboqs() == str(library)


@without_liboqs
def test_auto_cpu_backend_picks_openssl():
    with Engine(EngineConfig(offload="off", cpu_backend="auto")) as eng:
        names = [b["name"] for b in eng.health()["backends"]]
    assert names == ["openssl"]
    assert "oqs" not in sys.modules


@without_liboqs
def test_asking_for_liboqs_without_it_is_backend_unavailable():
    with pytest.raises(BackendUnavailable, match="liboqs shared library"):
        Engine(EngineConfig(offload="off", cpu_backend="liboqs"))


# -- on a host with liboqs -----------------------------------------------------


@pytest.fixture(scope="module")
def liboqs() -> Iterator[LiboqsBackend]:
    if not HAS_LIBOQS:
        pytest.skip(NOT_FOUND)
    try:
        backend = LiboqsBackend()
    except BackendUnavailable as exc:
        pytest.skip(f"liboqs is present but liboqs-python cannot use it: {exc}")
    yield backend
    backend.close()


@needs_liboqs
def test_liboqs_passes_its_self_tests(liboqs):
    report = run_selftests(liboqs)
    assert report.passed, report.failures
    assert any(key.kind is Kind.SIG_VERIFY for key in liboqs.capabilities())


@needs_liboqs
@pytest.mark.parametrize("param", ["ML-KEM-768", "ML-KEM-1024"])
def test_liboqs_encapsulates_to_openssl_keys(liboqs, param):
    openssl = OpenSSLBackend(threads=1)
    try:
        seed = bytes(range(64))
        (pair,) = openssl.run_batch(OpKey(Kind.KEM_KEYGEN, param), [KemKeygenIn(seed)])
        (sent,) = liboqs.run_batch(
            OpKey(Kind.KEM_ENCAPS, param), [KemEncapsIn(pair.ek)]
        )
        lane = KemDecapsIn(seed, sent.ct)
        (received,) = openssl.run_batch(OpKey(Kind.KEM_DECAPS, param), [lane])
    finally:
        openssl.close()
    assert received == sent.ss


@needs_liboqs
def test_liboqs_verifies_acvp_pure_signatures(liboqs):
    groups = load("acvp/ML-DSA-sigVer-FIPS204/internalProjection.json")["testGroups"]
    group = next(
        g
        for g in groups
        if g["parameterSet"] == "ML-DSA-65"
        and g["signatureInterface"] == "external"
        and g["preHash"] == "pure"
    )
    lanes = [
        SigVerifyIn(
            hexbytes(t["pk"]),
            hexbytes(t["message"]),
            hexbytes(t["signature"]),
            hexbytes(t["context"]),
        )
        for t in group["tests"]
    ]

    results = liboqs.run_batch(OpKey(Kind.SIG_VERIFY, "ML-DSA-65"), lanes)

    assert results == [t["testPassed"] for t in group["tests"]]
