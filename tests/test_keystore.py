"""The signing-key store on real files, with real ML-DSA keys from OpenSSL."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import stat
import tarfile
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import mldsa

from engine.errors import PqcError, UnsupportedParameterSet
from engine.params import SIG_PARAMS
from service.keystore import (
    AUDIT_NAME,
    GENERATION_NAME,
    LOCK_NAME,
    STATE_NAME,
    KeyStore,
    KeyStoreError,
    SigningKeyRecord,
)

ALGORITHMS = list(SIG_PARAMS)
DAY = 86400.0
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
KEY_CLASSES = {
    "ML-DSA-44": (mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey),
    "ML-DSA-65": (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey),
    "ML-DSA-87": (mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey),
}
NOT_STATE = {AUDIT_NAME, GENERATION_NAME, LOCK_NAME}


class Clock:
    """A settable clock, so validity windows are crossed without waiting."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, days: float) -> None:
        self.now += days * DAY


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def store(key_dir: Path, clock: Clock) -> KeyStore:
    return KeyStore(key_dir, clock=clock)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def store_files(key_dir: Path) -> dict[str, bytes]:
    """Every file that a backup must carry, by its path relative to key_dir."""
    found = {}
    for path in sorted(key_dir.rglob("*")):
        name = path.relative_to(key_dir).as_posix()
        if path.is_file() and name not in NOT_STATE:
            found[name] = path.read_bytes()
    return found


def audit_lines(key_dir: Path) -> list[dict]:
    text = (key_dir / AUDIT_NAME).read_text("utf-8")
    return [json.loads(line) for line in text.splitlines()]


def key_file(key_dir: Path, record: SigningKeyRecord) -> Path:
    return key_dir / record.algorithm / f"{record.key_id}.json"


def rewrite_key(path: Path, **changes: object) -> None:
    # write_bytes on an existing file keeps its 0600 mode.
    obj = json.loads(path.read_bytes())
    obj.update(changes)
    path.write_bytes(json.dumps(obj).encode("ascii"))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_files_are_private(store: KeyStore, key_dir: Path, algorithm: str) -> None:
    store.ensure([algorithm])

    assert mode_of(key_dir) == 0o700
    assert mode_of(key_dir / algorithm) == 0o700
    files = [p for p in key_dir.rglob("*") if p.is_file()]
    names = {p.relative_to(key_dir).as_posix() for p in files}
    key_id = store.current(algorithm).key_id
    assert names == NOT_STATE | {STATE_NAME, f"{algorithm}/{key_id}.json"}
    assert {p.name: mode_of(p) for p in files} == {p.name: 0o600 for p in files}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_new_key_is_a_real_ml_dsa_key(
    store: KeyStore, clock: Clock, algorithm: str
) -> None:
    store.ensure([algorithm])
    record = store.current(algorithm)

    assert record.key_id == hashlib.sha256(record.public_key).digest()[:16].hex()
    assert len(record.public_key) == SIG_PARAMS[algorithm].pk_bytes
    assert len(record.seed) == 32
    assert (record.not_before, record.not_after) == (START, START + 60 * DAY)
    assert store.by_id(record.key_id) == record

    private_class, public_class = KEY_CLASSES[algorithm]
    private = private_class.from_seed_bytes(record.seed)
    signature = private.sign(b"handshake", b"pqc-hs/1 server-hello")
    public = public_class.from_public_bytes(record.public_key)
    public.verify(signature, b"handshake", b"pqc-hs/1 server-hello")


def test_public_info_is_utc_whatever_the_host_zone(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Pacific/Chatham")
    time.tzset()
    try:
        store.ensure(["ML-DSA-65"])
        record = store.current("ML-DSA-65")
        info = record.public_info()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()

    assert info == {
        "key_id": record.key_id,
        "algorithm": "ML-DSA-65",
        "public_key": base64.b64encode(record.public_key).decode("ascii"),
        "not_before": "2027-01-15T08:00:00Z",
        "not_after": "2027-03-16T08:00:00Z",
    }


def test_second_instance_sees_the_same_keys(
    store: KeyStore, key_dir: Path, clock: Clock
) -> None:
    store.ensure(ALGORITHMS)
    other = KeyStore(key_dir, clock=clock)

    for algorithm in ALGORITHMS:
        assert other.current(algorithm) == store.current(algorithm)
    assert other.published() == store.published()


def test_ensure_creates_each_key_once(store: KeyStore, key_dir: Path) -> None:
    store.ensure(["ML-DSA-65"])
    first = store.current("ML-DSA-65")
    store.ensure(["ML-DSA-65", "ML-DSA-44"])
    KeyStore(key_dir).ensure(["ML-DSA-65", "ML-DSA-44"])

    assert store.current("ML-DSA-65") == first
    events = [(e["event"], e["algorithm"]) for e in audit_lines(key_dir)]
    assert events == [("generate", "ML-DSA-65"), ("generate", "ML-DSA-44")]


def test_unknown_algorithm_is_refused(store: KeyStore) -> None:
    with pytest.raises(UnsupportedParameterSet):
        store.ensure(["ML-DSA-99"])
    with pytest.raises(TypeError, match="not one string"):
        store.ensure("ML-DSA-65")
    with pytest.raises(KeyStoreError, match="call ensure"):
        store.current("ML-DSA-65")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_rotated_key_is_previous_until_it_expires(
    store: KeyStore, clock: Clock, algorithm: str
) -> None:
    store.ensure([algorithm])
    old = store.current(algorithm)
    clock.advance(10)
    [new] = store.rotate([algorithm])

    assert store.current(algorithm) == new
    assert new.not_before == START + 10 * DAY
    assert store.published() == [(new, "current"), (old, "previous")]
    assert [old.status(new.key_id), new.status(new.key_id)] == ["previous", "current"]

    clock.now = old.not_after - 1
    assert store.published() == [(new, "current"), (old, "previous")]
    clock.now = old.not_after
    assert store.published() == [(new, "current")]


def test_rotation_drops_expired_keys_from_the_state(
    store: KeyStore, key_dir: Path, clock: Clock
) -> None:
    store.ensure(["ML-DSA-44"])
    first = store.current("ML-DSA-44")
    clock.advance(30)
    store.rotate()
    clock.advance(31)
    store.rotate()

    assert store.by_id(first.key_id) is None
    assert key_file(key_dir, first).exists()
    assert first.key_id not in (key_dir / STATE_NAME).read_text("ascii")
    assert len(store.published()) == 2


def test_rotate_if_due(store: KeyStore, clock: Clock) -> None:
    store.ensure(["ML-DSA-44", "ML-DSA-87"])
    clock.advance(29.9)
    assert store.rotate_if_due() == []

    clock.advance(0.1)
    rotated = store.rotate_if_due()
    assert [r.algorithm for r in rotated] == ["ML-DSA-44", "ML-DSA-87"]
    assert [store.current(r.algorithm) for r in rotated] == rotated
    assert store.rotate_if_due() == []


def test_rotate_if_due_in_two_processes_rotates_once(
    key_dir: Path, clock: Clock
) -> None:
    a = KeyStore(key_dir, clock=clock)
    a.ensure(["ML-DSA-65"])
    b = KeyStore(key_dir, clock=clock)
    clock.advance(30)

    [new] = a.rotate_if_due()
    assert b.rotate_if_due() == []
    assert b.current("ML-DSA-65") == new


def test_reload_if_changed_after_rotation(key_dir: Path, clock: Clock) -> None:
    a = KeyStore(key_dir, clock=clock)
    a.ensure(["ML-DSA-65"])
    b = KeyStore(key_dir, clock=clock)
    assert b.reload_if_changed() is False

    [new] = a.rotate()
    assert b.current("ML-DSA-65") != new
    assert b.reload_if_changed() is True
    assert b.current("ML-DSA-65") == new
    assert b.published() == a.published()
    assert b.reload_if_changed() is False


def test_backup_and_restore_round_trip(
    store: KeyStore, key_dir: Path, clock: Clock, tmp_path: Path
) -> None:
    store.ensure(ALGORITHMS)
    clock.advance(1)
    store.rotate(["ML-DSA-65"])
    before = store_files(key_dir)
    archive = tmp_path / "keys.tar"
    store.backup(archive)

    assert mode_of(archive) == 0o600
    shutil.rmtree(key_dir)
    store.restore(archive)

    assert store_files(key_dir) == before
    assert mode_of(key_dir) == 0o700
    for path in key_dir.rglob("*"):
        assert mode_of(path) == (0o700 if path.is_dir() else 0o600)
    fresh = KeyStore(key_dir, clock=clock)
    assert fresh.published() == store.published()
    assert len(fresh.published()) == 4


def test_restore_tells_other_processes(
    store: KeyStore, key_dir: Path, clock: Clock, tmp_path: Path
) -> None:
    store.ensure(["ML-DSA-44"])
    archive = tmp_path / "keys.tar"
    store.backup(archive)
    original = store.current("ML-DSA-44")
    store.rotate()
    other = KeyStore(key_dir, clock=clock)

    store.restore(archive)
    assert other.reload_if_changed() is True
    assert other.current("ML-DSA-44") == original


def archive_with(good: Path, bad: tarfile.TarInfo, data: bytes = b"") -> Path:
    """Copy a valid archive and append one hostile member to it."""
    out = good.with_name("tampered.tar")
    with tarfile.open(good) as src, tarfile.open(out, "w") as dst:
        for info in src:
            dst.addfile(info, src.extractfile(info))
        bad.size = len(data) if bad.isreg() else 0
        dst.addfile(bad, io.BytesIO(data) if bad.isreg() else None)
    return out


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o600
    return info


HOSTILE = {
    "dotdot": member("../evil.json"),
    "dotdot-inside": member("ML-DSA-65/../../evil.json"),
    "absolute": member("/tmp/evil.json"),
    "symlink": member("ML-DSA-65/" + "0" * 32 + ".json", tarfile.SYMTYPE, "/etc"),
    "hardlink": member("state.json", tarfile.LNKTYPE, "../evil.json"),
    "directory": member("ML-DSA-65", tarfile.DIRTYPE),
    "unknown-name": member("evil.json"),
    "unknown-folder": member("ML-DSA-99/" + "0" * 32 + ".json"),
}


@pytest.mark.parametrize("bad", HOSTILE.values(), ids=HOSTILE.keys())
def test_restore_rejects_hostile_members(
    store: KeyStore, key_dir: Path, tmp_path: Path, bad: tarfile.TarInfo
) -> None:
    store.ensure(["ML-DSA-65"])
    good = tmp_path / "keys.tar"
    store.backup(good)
    store.rotate()
    before = store_files(key_dir)
    tampered = archive_with(good, bad, b'{"format": "x"}')

    with pytest.raises(KeyStoreError, match="archive"):
        store.restore(tampered)
    assert store_files(key_dir) == before
    assert not (tmp_path / "evil.json").exists()


def test_restore_rejects_a_tampered_key(
    store: KeyStore, key_dir: Path, tmp_path: Path
) -> None:
    store.ensure(["ML-DSA-44"])
    record = store.current("ML-DSA-44")
    rewrite_key(
        key_file(key_dir, record),
        public_key=base64.b64encode(bytes(len(record.public_key))).decode(),
    )
    members = {
        STATE_NAME: (key_dir / STATE_NAME).read_bytes(),
        f"ML-DSA-44/{record.key_id}.json": key_file(key_dir, record).read_bytes(),
    }
    archive = tmp_path / "forged.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    with pytest.raises(KeyStoreError, match="does not match the one derived"):
        store.restore(archive)


def test_tampered_public_key_is_refused(store: KeyStore, key_dir: Path) -> None:
    store.ensure(["ML-DSA-65"])
    record = store.current("ML-DSA-65")
    forged = bytearray(record.public_key)
    forged[100] ^= 1
    rewrite_key(key_file(key_dir, record), public_key=base64.b64encode(forged).decode())

    with pytest.raises(KeyStoreError, match=r"public key .* does not match") as err:
        KeyStore(key_dir)
    assert isinstance(err.value, PqcError)


def test_tampered_key_id_is_refused(store: KeyStore, key_dir: Path) -> None:
    store.ensure(["ML-DSA-65"])
    record = store.current("ML-DSA-65")
    rewrite_key(key_file(key_dir, record), key_id="0" * 32)

    with pytest.raises(KeyStoreError, match=r"key_id .* does not match SHA-256"):
        KeyStore(key_dir)


def test_key_under_the_wrong_name_is_refused(store: KeyStore, key_dir: Path) -> None:
    store.ensure(["ML-DSA-65"])
    old = store.current("ML-DSA-65")
    [new] = store.rotate()
    shutil.copyfile(key_file(key_dir, new), key_file(key_dir, old))

    with pytest.raises(KeyStoreError, match="not the key its name promises"):
        KeyStore(key_dir)


@pytest.mark.parametrize("target", ["key file", "state", "key directory"])
def test_shared_permissions_are_refused(
    store: KeyStore, key_dir: Path, target: str
) -> None:
    store.ensure(["ML-DSA-87"])
    paths = {
        "key file": (key_file(key_dir, store.current("ML-DSA-87")), 0o640),
        "state": (key_dir / STATE_NAME, 0o604),
        "key directory": (key_dir, 0o750),
    }
    path, mode = paths[target]
    path.chmod(mode)

    with pytest.raises(KeyStoreError, match="accessible to group or others"):
        KeyStore(key_dir)


def test_audit_log_records_events_without_secrets(
    store: KeyStore,
    key_dir: Path,
    clock: Clock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    store.ensure(ALGORITHMS)
    first = [store.current(a) for a in ALGORITHMS]
    clock.advance(30)
    rotated = store.rotate_if_due()
    store.backup(tmp_path / "keys.tar")
    store.restore(tmp_path / "keys.tar")

    lines = audit_lines(key_dir)
    assert mode_of(key_dir / AUDIT_NAME) == 0o600
    assert [e["event"] for e in lines] == ["generate"] * 3 + ["rotate"] * 3 + [
        "backup",
        "restore",
    ]
    assert [e["key_id"] for e in lines[:6]] == [r.key_id for r in first + rotated]
    assert [e["previous_key_id"] for e in lines[3:6]] == [r.key_id for r in first]
    assert all(e["pid"] == os.getpid() for e in lines)
    assert lines[0]["time"] == "2027-01-15T08:00:00.000Z"

    text = (key_dir / AUDIT_NAME).read_text("utf-8") + caplog.text
    for record in first + rotated:
        assert record.seed.hex() not in text
        assert base64.b64encode(record.seed).decode() not in text
        assert base64.b64encode(record.seed).decode().rstrip("=") not in text


def test_repr_hides_the_seed(store: KeyStore) -> None:
    store.ensure(["ML-DSA-44"])
    record = store.current("ML-DSA-44")

    text = repr(record)
    assert "seed" not in text
    assert repr(record.seed) not in text
    assert record.seed.hex() not in text


def race_ensure(key_dir: str, barrier, results) -> None:
    barrier.wait()
    store = KeyStore(key_dir)
    store.ensure(["ML-DSA-65"])
    results.put(store.current("ML-DSA-65").key_id)


@pytest.mark.timeout(60)
def test_racing_processes_create_one_key(key_dir: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=race_ensure, args=(str(key_dir), barrier, results))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    key_ids = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)

    assert [w.exitcode for w in workers] == [0] * 4
    assert len(set(key_ids)) == 1
    assert [p.name for p in (key_dir / "ML-DSA-65").iterdir()] == [f"{key_ids[0]}.json"]
    assert [e["event"] for e in audit_lines(key_dir)] == ["generate"]
