"""The signing-key store: ML-DSA keys shared by every worker through a directory.

Layout of ``key_dir`` (mode 0700; every file 0600 from creation):

    state.json              the current key of each algorithm, and the keys
                            rotated out of that role that have not yet expired
    <algorithm>/<id>.json   one key: algorithm, public key, seed, validity
    generation              a random token rewritten on every change, so other
                            processes notice a rotation with one small read
    audit.log               one JSON line per generate, rotate, backup, restore
    .lock                   the file that flock() serialises writers on

A key is valid for two rotation periods: one as ``current`` and one more as
``previous``, so clients that pinned it keep working through the overlap
(protocol.md, section 1). Expired keys are never deleted: the first rotation
after a key's ``not_after`` drops it from ``state.json``, and its file stays on
disk, unreferenced, for an operator to archive or remove.

Writers (``ensure``, ``rotate``, ``rotate_if_due``, ``restore``) hold an
exclusive flock and re-read the state after taking it, so racing processes
create exactly one key. Readers load under a shared flock. Every file is
replaced atomically (temporary file, fsync, rename, directory fsync), and the
generation token is written last, so a reader sees an old store or a new one.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import re
import secrets
import stat
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric import mldsa

from engine.errors import ConfigError, PqcError
from engine.params import SIG_PARAMS, sig_params

logger = logging.getLogger(__name__)

STATE_NAME = "state.json"
GENERATION_NAME = "generation"
AUDIT_NAME = "audit.log"
LOCK_NAME = ".lock"

_KEY_FORMAT = "pqc-engine/signing-key/1"
_STATE_FORMAT = "pqc-engine/key-state/1"
_KEY_ID_RE = re.compile(r"[0-9a-f]{32}")
_SECONDS_PER_DAY = 86400.0
_TIME_LIMIT = 253402300800.0  # 10000-01-01T00:00:00Z, beyond datetime
_MAX_MEMBER_BYTES = 1 << 20  # a key file is a few KiB; anything larger is bogus

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC
_OPENSSL_KEYS = {
    "ML-DSA-44": mldsa.MLDSA44PrivateKey,
    "ML-DSA-65": mldsa.MLDSA65PrivateKey,
    "ML-DSA-87": mldsa.MLDSA87PrivateKey,
}


class KeyStoreError(PqcError):
    """The key directory or an archive is unsafe, inconsistent or tampered with.

    Retrying cannot help: an operator has to repair the directory or archive.
    """


def key_id_for(public_key: bytes) -> str:
    """Return the key id: the first 16 bytes of SHA-256(public key), in hex."""
    return hashlib.sha256(public_key).digest()[:16].hex()


def _rfc3339(t: float, timespec: str = "seconds") -> str:
    moment = datetime.fromtimestamp(t, tz=UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def _derive_public_openssl(algorithm: str, seed: bytes) -> bytes:
    # FIPS 204, Algorithm 1 (ML-DSA.KeyGen) run from the 32-byte seed xi.
    private = _OPENSSL_KEYS[algorithm].from_seed_bytes(seed)
    return private.public_key().public_bytes_raw()


@dataclass(frozen=True)
class SigningKeyRecord:
    """One ML-DSA signing key with its validity window (unix seconds, UTC)."""

    key_id: str
    algorithm: str
    public_key: bytes
    seed: bytes = field(repr=False)  # FIPS 204 xi: the whole private key
    not_before: float
    not_after: float

    def status(self, current_key_id: str | None) -> str:
        """Return "current" when this is ``current_key_id``, else "previous"."""
        return "current" if self.key_id == current_key_id else "previous"

    def public_info(self) -> dict[str, str]:
        """Return the fields that ``GET /api/pqc/keys`` publishes for this key."""
        return {
            "key_id": self.key_id,
            "algorithm": self.algorithm,
            "public_key": base64.b64encode(self.public_key).decode("ascii"),
            "not_before": _rfc3339(self.not_before),
            "not_after": _rfc3339(self.not_after),
        }


@dataclass(frozen=True)
class _State:
    """What ``state.json`` says: key ids per algorithm, newest previous first."""

    current: dict[str, str]
    previous: dict[str, tuple[str, ...]]

    def key_refs(self) -> Iterator[tuple[str, str]]:
        yield from self.current.items()
        for algorithm, key_ids in self.previous.items():
            for key_id in key_ids:
                yield algorithm, key_id


@dataclass(frozen=True)
class _Snapshot:
    """An immutable view of the store, swapped whole so readers need no lock."""

    state: _State
    records: dict[str, SigningKeyRecord]
    generation: str | None


_EMPTY_STATE = _State({}, {})
_EMPTY = _Snapshot(_EMPTY_STATE, {}, None)


# File primitives.


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data``; readers see the old bytes or the new ones.

    The temporary file is created 0600 and never widened, so key bytes are
    never readable by others, not even for a moment. The directory is synced
    after the rename so that the new name survives a crash.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _check_private(path: Path, st: os.stat_result, what: str) -> None:
    # Group or world access to a seed is a leaked key; refuse rather than
    # quietly tightening the mode, so the operator learns of the exposure.
    if st.st_mode & 0o077:
        mode = oct(stat.S_IMODE(st.st_mode))
        wanted = "700" if stat.S_ISDIR(st.st_mode) else "600"
        raise KeyStoreError(
            f"The {what} {path} is accessible to group or others (mode {mode}); "
            f"restrict it to its owner with chmod {wanted}."
        )


def _read_private(path: Path, what: str) -> bytes:
    """Read a regular file that only its owner may access.

    FileNotFoundError passes through; callers decide whether absence is fine.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeyStoreError(f"Cannot open the {what} {path}: {exc.strerror}.") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise KeyStoreError(f"The {what} {path} is not a regular file.")
        _check_private(path, st, what)
        return f.read()


def _check_private_dir(path: Path) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise KeyStoreError(f"The key directory {path} is not a directory.")
    _check_private(path, st, "key directory")


# Encoding and validation of key files and state.


def _b64decode(text: Any, name: str, where: str) -> bytes:
    if isinstance(text, str):
        with contextlib.suppress(ValueError):
            raw = base64.b64decode(text, validate=True)
            if base64.b64encode(raw).decode("ascii") == text:
                return raw
    raise KeyStoreError(f"The {name} field of {where} is not canonical base64.")


def _field(obj: dict[str, Any], name: str, kind: Any, where: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise KeyStoreError(f"The {name} field of {where} is missing or malformed.")
    return value


def _time_field(obj: dict[str, Any], name: str, where: str) -> float:
    value = float(_field(obj, name, int | float, where))
    if not 0.0 <= value < _TIME_LIMIT:
        raise KeyStoreError(f"The {name} field of {where} is out of range.")
    return value


def _load_json(data: bytes, fmt: str, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except ValueError:
        raise KeyStoreError(f"The file {where} is not valid JSON.") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise KeyStoreError(f"The file {where} is not in the {fmt} format.")
    return obj


def _encode_key(record: SigningKeyRecord) -> bytes:
    obj = {
        "format": _KEY_FORMAT,
        "key_id": record.key_id,
        "algorithm": record.algorithm,
        "public_key": base64.b64encode(record.public_key).decode("ascii"),
        "seed": base64.b64encode(record.seed).decode("ascii"),
        "not_before": record.not_before,
        "not_after": record.not_after,
    }
    return (json.dumps(obj, indent=2) + "\n").encode("ascii")


def _decode_key(
    data: bytes, where: str, derive_public: Callable[[str, bytes], bytes]
) -> SigningKeyRecord:
    """Parse a key file and prove that its parts belong together."""
    obj = _load_json(data, _KEY_FORMAT, where)
    algorithm = _field(obj, "algorithm", str, where)
    if algorithm not in SIG_PARAMS:
        raise KeyStoreError(
            f"The key file {where} names an unknown algorithm {algorithm!r}."
        )
    seed = _b64decode(obj.get("seed"), "seed", where)
    expected = sig_params(algorithm).seed_bytes
    if len(seed) != expected:
        raise KeyStoreError(
            f"The seed in {where} is {len(seed)} bytes; expected {expected}."
        )
    record = SigningKeyRecord(
        key_id=_field(obj, "key_id", str, where),
        algorithm=algorithm,
        public_key=_b64decode(obj.get("public_key"), "public_key", where),
        seed=seed,
        not_before=_time_field(obj, "not_before", where),
        not_after=_time_field(obj, "not_after", where),
    )
    _check_key_binding(record, where, derive_public)
    return record


def _check_key_binding(
    record: SigningKeyRecord, where: str, derive_public: Callable[[str, bytes], bytes]
) -> None:
    # The seed is the private key (FIPS 204, Algorithm 1), so the stored public
    # key and key id are only trusted once recomputed from it.
    if derive_public(record.algorithm, record.seed) != record.public_key:
        raise KeyStoreError(
            f"The public key in {where} does not match the one derived from its "
            "seed; the file was altered or corrupted."
        )
    if record.key_id != key_id_for(record.public_key):
        raise KeyStoreError(
            f"The key_id in {where} does not match SHA-256 of its public key; "
            "the file was altered or corrupted."
        )
    if not record.not_before < record.not_after:
        raise KeyStoreError(
            f"The key file {where} has not_before at or after not_after."
        )


def _key_ids(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and _KEY_ID_RE.fullmatch(v) for v in value
    ):
        raise KeyStoreError(f"The state {where} lists a malformed key id.")
    return tuple(value)


def _decode_state(data: bytes, where: str) -> _State:
    obj = _load_json(data, _STATE_FORMAT, where)
    current = _field(obj, "current", dict, where)
    previous = _field(obj, "previous", dict, where)
    if not set(current) | set(previous) <= set(SIG_PARAMS):
        raise KeyStoreError(f"The state {where} names an unknown algorithm.")
    return _State(
        current={a: _key_ids([k], where)[0] for a, k in current.items()},
        previous={a: _key_ids(ids, where) for a, ids in previous.items()},
    )


def _encode_state(state: _State) -> bytes:
    obj = {
        "format": _STATE_FORMAT,
        "current": dict(sorted(state.current.items())),
        "previous": {a: list(ids) for a, ids in sorted(state.previous.items())},
    }
    return (json.dumps(obj, indent=2) + "\n").encode("ascii")


def _rotated_state(
    state: _State,
    new: list[SigningKeyRecord],
    records: dict[str, SigningKeyRecord],
    now: float,
) -> _State:
    """Make each new record current; keep old keys as previous until expiry."""
    current = dict(state.current)
    previous = {a: list(ids) for a, ids in state.previous.items()}
    for record in new:
        old = current.get(record.algorithm)
        if old is not None:
            previous.setdefault(record.algorithm, []).insert(0, old)
        current[record.algorithm] = record.key_id

    live = {
        a: tuple(k for k in ids if records[k].not_after > now)
        for a, ids in previous.items()
    }
    return _State(current, {a: ids for a, ids in live.items() if ids})


def _algorithm_list(algorithms: Iterable[str]) -> list[str]:
    if isinstance(algorithms, str):
        raise TypeError("algorithms must be an iterable of names, not one string.")
    return [sig_params(a).name for a in dict.fromkeys(algorithms)]


# Archives.


def _member_name(info: tarfile.TarInfo, src: Path) -> str:
    """Return the member's name if it is a key store file, else refuse it."""
    name = info.name
    if name.startswith("/") or ".." in PurePosixPath(name).parts:
        raise KeyStoreError(f"The archive {src} has an unsafe member path {name!r}.")
    if not info.isreg():
        raise KeyStoreError(
            f"The archive member {name!r} in {src} is not a regular file; links, "
            "directories and devices are refused."
        )
    parts = name.split("/")
    known = name == STATE_NAME or (
        len(parts) == 2
        and parts[0] in SIG_PARAMS
        and parts[1].endswith(".json")
        and _KEY_ID_RE.fullmatch(parts[1][: -len(".json")]) is not None
    )
    if not known:
        raise KeyStoreError(f"The archive {src} has an unknown member {name!r}.")
    if info.size > _MAX_MEMBER_BYTES:
        raise KeyStoreError(f"The archive member {name!r} in {src} is too large.")
    return name


def _read_archive(src: Path) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(src, mode="r:") as tar:
            for info in tar:
                name = _member_name(info, src)
                if name in members:
                    raise KeyStoreError(f"The archive {src} repeats member {name!r}.")
                members[name] = tar.extractfile(info).read()
    except (OSError, tarfile.TarError) as exc:
        raise KeyStoreError(f"Cannot read the key archive {src}: {exc}.") from None
    return members


def _tar_bytes(members: dict[str, bytes], mtime: float) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            info.mtime = int(mtime)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class KeyStore:
    """ML-DSA signing keys in a directory shared by every worker process.

    ``derive_public(algorithm, seed)`` recomputes a public key from its seed;
    the default runs ML-DSA key generation in OpenSSL through ``cryptography``.
    ``clock`` returns unix seconds; tests inject one to move time.
    """

    def __init__(
        self,
        key_dir: str | Path,
        *,
        rotation_days: float = 30.0,
        derive_public: Callable[[str, bytes], bytes] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (math.isfinite(rotation_days) and rotation_days > 0):
            raise ConfigError(
                f"rotation_days must be a positive number of days, not {rotation_days}."
            )
        self._dir = Path(key_dir)
        self._period = rotation_days * _SECONDS_PER_DAY
        self._derive = derive_public or _derive_public_openssl
        self._clock = clock
        self._snap = self._load() if self._dir.exists() else _EMPTY

    @property
    def key_dir(self) -> Path:
        return self._dir

    def ensure(self, algorithms: Iterable[str]) -> None:
        """Create a current key for each algorithm that lacks one."""
        wanted = _algorithm_list(algorithms)
        if all(a in self._snap.state.current for a in wanted):
            return

        self._make_dir()
        with self._lock(exclusive=True):
            snap = self._read_snapshot()
            missing = [a for a in wanted if a not in snap.state.current]
            self._snap = self._install(snap, missing)[0] if missing else snap

    def current(self, algorithm: str) -> SigningKeyRecord:
        """Return the key that signs new handshakes for ``algorithm``."""
        name = sig_params(algorithm).name
        snap = self._snap
        key_id = snap.state.current.get(name)
        if key_id is None:
            raise KeyStoreError(
                f"The key store {self._dir} has no {name} key; call ensure() first."
            )
        return snap.records[key_id]

    def by_id(self, key_id: str) -> SigningKeyRecord | None:
        """Return a current or previous key by id (expired ones included)."""
        return self._snap.records.get(key_id)

    def published(self) -> list[tuple[SigningKeyRecord, str]]:
        """Return the keys to publish, each with "current" or "previous".

        The current key of every algorithm is listed even if overdue for
        rotation; previous keys are listed until their ``not_after``.
        """
        snap = self._snap
        now = self._clock()
        listed = [
            (snap.records[k], "current") for _, k in sorted(snap.state.current.items())
        ]
        for _, key_ids in sorted(snap.state.previous.items()):
            records = (snap.records[k] for k in key_ids)
            listed += [(r, "previous") for r in records if r.not_after > now]
        return listed

    def rotate(self, algorithms: Iterable[str] | None = None) -> list[SigningKeyRecord]:
        """Give each algorithm (default: all with a key) a new current key."""
        names = None if algorithms is None else _algorithm_list(algorithms)
        self._make_dir()
        with self._lock(exclusive=True):
            snap = self._read_snapshot()
            wanted = sorted(snap.state.current) if names is None else names
            self._snap, new = self._install(snap, wanted)
        return new

    def rotate_if_due(self) -> list[SigningKeyRecord]:
        """Rotate every algorithm whose current key is a full period old."""
        if not self._due(self._snap):
            return []

        with self._lock(exclusive=True):
            snap = self._read_snapshot()
            due = self._due(snap)
            self._snap, new = self._install(snap, due) if due else (snap, [])
        return new

    def reload_if_changed(self) -> bool:
        """Reload if another process changed the store; True if it did."""
        generation = self._read_generation()
        if generation is None or generation == self._snap.generation:
            return False

        self._snap = self._load()
        logger.info("Reloaded the key store %s after an outside change", self._dir)
        return True

    def backup(self, dest: str | Path) -> None:
        """Write a 0600 tar archive of ``state.json`` and the keys it names.

        Keys already dropped from the state (expired) are not archived; the
        audit log, lock and generation files are not state and are left out.
        """
        dest = Path(dest)
        if not (self._dir / STATE_NAME).exists():
            raise KeyStoreError(
                f"The key store {self._dir} is empty; nothing to back up."
            )

        with self._lock(exclusive=False):
            snap = self._read_snapshot()
            members = {STATE_NAME: _read_private(self._dir / STATE_NAME, "state")}
            for algorithm, key_id in snap.state.key_refs():
                path = self._key_path(algorithm, key_id)
                members[f"{algorithm}/{path.name}"] = _read_private(path, "key file")
        _write_atomic(dest, _tar_bytes(members, self._clock()))

        key_ids = sorted(snap.records)
        self._audit("backup", key_ids=key_ids, archive=str(dest))
        logger.info("Backed up %d signing keys to %s", len(key_ids), dest)

    def restore(self, src: str | Path) -> None:
        """Restore an archive written by ``backup``, byte for byte.

        Every member is checked before anything is written: a plain file with
        a known name (no absolute path, no "..", no link), each key bound to
        its seed and id, and every key that the state names present. Key files
        not in the archive are left alone. A new generation token tells other
        processes to reload.
        """
        src = Path(src)
        members = _read_archive(src)
        key_ids = self._check_archive(members, src)

        self._make_dir()
        with self._lock(exclusive=True):
            for name, data in members.items():
                if name != STATE_NAME:
                    self._make_subdir(name.split("/")[0])
                    _write_atomic(self._dir / name, data)
            _write_atomic(self._dir / STATE_NAME, members[STATE_NAME])
            self._write_generation()
            self._snap = self._read_snapshot()
            self._audit("restore", key_ids=key_ids, archive=str(src))
        logger.info("Restored %d signing keys from %s", len(key_ids), src)

    # Loading.

    def _load(self) -> _Snapshot:
        _check_private_dir(self._dir)
        with self._lock(exclusive=False):
            return self._read_snapshot()

    def _read_snapshot(self) -> _Snapshot:
        """Read the store from disk; the caller holds the lock."""
        generation = self._read_generation()
        try:
            data = _read_private(self._dir / STATE_NAME, "key store state")
        except FileNotFoundError:
            return _Snapshot(_EMPTY_STATE, {}, generation)

        state = _decode_state(data, str(self._dir / STATE_NAME))
        records = {k: self._read_key(a, k) for a, k in state.key_refs()}
        return _Snapshot(state, records, generation)

    def _read_key(self, algorithm: str, key_id: str) -> SigningKeyRecord:
        path = self._key_path(algorithm, key_id)
        _check_private_dir(path.parent)
        try:
            data = _read_private(path, "key file")
        except FileNotFoundError:
            raise KeyStoreError(
                f"The key store state names {algorithm} key {key_id}, but {path} "
                "does not exist."
            ) from None

        record = _decode_key(data, str(path), self._derive)
        if (record.algorithm, record.key_id) != (algorithm, key_id):
            raise KeyStoreError(
                f"The key file {path} holds {record.algorithm} key {record.key_id}, "
                "not the key its name promises."
            )
        return record

    def _read_generation(self) -> str | None:
        try:
            return (self._dir / GENERATION_NAME).read_text("ascii").strip()
        except FileNotFoundError:
            return None

    def _check_archive(self, members: dict[str, bytes], src: Path) -> list[str]:
        """Validate an archive's contents; return the key ids its state names."""
        if STATE_NAME not in members:
            raise KeyStoreError(f"The archive {src} has no {STATE_NAME}.")
        state = _decode_state(members[STATE_NAME], f"{src}:{STATE_NAME}")

        for name, data in members.items():
            if name == STATE_NAME:
                continue
            record = _decode_key(data, f"{src}:{name}", self._derive)
            if f"{record.algorithm}/{record.key_id}.json" != name:
                raise KeyStoreError(
                    f"The archive member {name!r} in {src} is misnamed."
                )

        for algorithm, key_id in state.key_refs():
            if f"{algorithm}/{key_id}.json" not in members:
                raise KeyStoreError(
                    f"The archive {src} names {algorithm} key {key_id} in its state "
                    "but does not contain it."
                )
        return sorted(k for _, k in state.key_refs())

    # Writing.

    def _make_dir(self) -> None:
        os.makedirs(self._dir, mode=0o700, exist_ok=True)
        _check_private_dir(self._dir)

    def _make_subdir(self, algorithm: str) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(self._dir / algorithm, 0o700)
        _check_private_dir(self._dir / algorithm)

    def _key_path(self, algorithm: str, key_id: str) -> Path:
        return self._dir / algorithm / f"{key_id}.json"

    @contextlib.contextmanager
    def _lock(self, *, exclusive: bool) -> Iterator[None]:
        # A fresh descriptor per call, so threads of one process exclude each
        # other too; closing it releases the lock even if the body raises.
        path = self._dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def _due(self, snap: _Snapshot) -> list[str]:
        now = self._clock()
        return [
            algorithm
            for algorithm, key_id in sorted(snap.state.current.items())
            if now - snap.records[key_id].not_before >= self._period
        ]

    def _generate(self, algorithm: str, now: float) -> SigningKeyRecord:
        seed = os.urandom(sig_params(algorithm).seed_bytes)
        public_key = self._derive(algorithm, seed)
        return SigningKeyRecord(
            key_id=key_id_for(public_key),
            algorithm=algorithm,
            public_key=public_key,
            seed=seed,
            not_before=now,
            not_after=now + 2 * self._period,
        )

    def _install(
        self, snap: _Snapshot, algorithms: list[str]
    ) -> tuple[_Snapshot, list[SigningKeyRecord]]:
        """Generate and commit new current keys; the caller holds the lock.

        Key files go first and the generation token last, so a reader never
        sees a state that names a key file not yet written.
        """
        if not algorithms:
            return snap, []

        now = self._clock()
        new = [self._generate(a, now) for a in algorithms]
        for record in new:
            self._make_subdir(record.algorithm)
            _write_atomic(
                self._key_path(record.algorithm, record.key_id), _encode_key(record)
            )

        records = snap.records | {r.key_id: r for r in new}
        state = _rotated_state(snap.state, new, records, now)
        _write_atomic(self._dir / STATE_NAME, _encode_state(state))
        generation = self._write_generation()

        for record in new:
            self._record_new_key(record, snap.state.current.get(record.algorithm))
        kept = {k: records[k] for _, k in state.key_refs()}
        return _Snapshot(state, kept, generation), new

    def _write_generation(self) -> str:
        token = secrets.token_hex(16)
        _write_atomic(self._dir / GENERATION_NAME, f"{token}\n".encode("ascii"))
        return token

    def _record_new_key(self, record: SigningKeyRecord, old: str | None) -> None:
        if old is None:
            self._audit("generate", algorithm=record.algorithm, key_id=record.key_id)
            logger.info("Generated %s signing key %s", record.algorithm, record.key_id)
            return

        self._audit(
            "rotate",
            algorithm=record.algorithm,
            key_id=record.key_id,
            previous_key_id=old,
        )
        logger.info(
            "Rotated %s signing key: %s replaces %s",
            record.algorithm,
            record.key_id,
            old,
        )

    def _audit(self, event: str, **fields: Any) -> None:
        """Append one JSON line; key ids and paths only, never key material."""
        entry = {"time": _rfc3339(self._clock(), "milliseconds"), "event": event}
        entry |= fields
        entry["pid"] = os.getpid()
        line = (json.dumps(entry) + "\n").encode("utf-8")

        path = self._dir / AUDIT_NAME
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _OPEN_FLAGS
        fd = os.open(path, flags, 0o600)
        try:
            _write_all(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
