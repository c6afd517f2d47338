"""Service settings: ``PQC_*`` environment variables over embedded defaults.

The defaults make ``pqc-engine serve`` work on a bare machine: memory
session store, the host device runtime when built, and self-generated
signing keys in a per-user key directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from engine.config import EngineConfig, parse_value
from engine.errors import ConfigError
from engine.params import KEM_PARAMS, SIG_PARAMS


def default_key_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "pqc-engine" / "keys")


@dataclass(frozen=True)
class Settings:
    """Everything the HTTP service needs; ``engine`` holds the engine's part."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    kem_algorithm: str = "ML-KEM-768"  # PQC_KEM_ALGORITHM
    sig_algorithm: str = "ML-DSA-65"  # PQC_SIG_ALGORITHM
    session_redis: bool = False  # PQC_SESSION_REDIS
    session_redis_url: str = "redis://127.0.0.1:6379/0"  # PQC_SESSION_REDIS_URL
    session_redis_timeout_seconds: float = 1.0  # PQC_SESSION_REDIS_TIMEOUT_SECONDS
    session_ttl_seconds: float = 3600.0  # PQC_SESSION_TTL_SECONDS
    session_grace_seconds: float = 300.0  # PQC_SESSION_GRACE_SECONDS
    handshake_timeout_seconds: float = 30.0  # PQC_HANDSHAKE_TIMEOUT_SECONDS
    clock_skew_seconds: float = 60.0  # PQC_CLOCK_SKEW_SECONDS
    key_dir: str = field(default_factory=default_key_dir)  # PQC_KEY_DIR
    key_rotation_days: float = 30.0  # PQC_KEY_ROTATION_DAYS
    max_body_bytes: int = 65536  # PQC_MAX_BODY_BYTES
    host: str = "127.0.0.1"  # PQC_HOST
    port: int = 8000  # PQC_PORT
    workers: int = 1  # PQC_WORKERS
    log_level: str = "info"  # PQC_LOG_LEVEL
    # One line per request costs about a tenth of the event loop at load.
    access_log: bool = False  # PQC_ACCESS_LOG

    def __post_init__(self) -> None:
        if self.kem_algorithm not in KEM_PARAMS:
            raise ConfigError(f"PQC_KEM_ALGORITHM {self.kem_algorithm!r} is unknown.")
        if self.sig_algorithm not in SIG_PARAMS:
            raise ConfigError(f"PQC_SIG_ALGORITHM {self.sig_algorithm!r} is unknown.")
        for name in (
            "session_ttl_seconds",
            "session_grace_seconds",
            "handshake_timeout_seconds",
            "clock_skew_seconds",
            "key_rotation_days",
            "session_redis_timeout_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"PQC_{name.upper()} must be greater than zero.")
        self._check_upper_bounds()
        if not 1024 <= self.max_body_bytes <= 16 * 1024 * 1024:
            raise ConfigError("PQC_MAX_BODY_BYTES must be between 1024 and 16 MiB.")
        if not 1 <= self.workers <= 256:
            raise ConfigError("PQC_WORKERS must be between 1 and 256.")
        if not 0 <= self.port <= 65535:
            raise ConfigError("PQC_PORT must be between 0 and 65535.")

    def _check_upper_bounds(self) -> None:
        # Store TTLs are capped at a year; these bounds keep every TTL the
        # service derives from them (lifetime + grace, 2 x skew + 1) below it.
        day = 24 * 3600.0
        limits = {
            "session_ttl_seconds": 180 * day,
            "session_grace_seconds": 30 * day,
            "handshake_timeout_seconds": day,
            "clock_skew_seconds": day,
            "key_rotation_days": 3650.0,
            "session_redis_timeout_seconds": 60.0,
        }
        for name, limit in limits.items():
            if getattr(self, name) > limit:
                raise ConfigError(f"PQC_{name.upper()} must be at most {limit:g}.")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {"engine": EngineConfig.from_env(env)}
        for f in fields(cls):
            name = "PQC_" + f.name.upper()
            if f.name != "engine" and name in env:
                values[f.name] = parse_value(name, env[name], f.type)
        return cls(**values)

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The ``PQC_*`` variables that reproduce these settings (for workers)."""
        out = {"PQC_" + k.upper(): _env_text(v) for k, v in asdict(self.engine).items()}
        for f in fields(self):
            if f.name != "engine":
                out["PQC_" + f.name.upper()] = _env_text(getattr(self, f.name))
        return out

    def to_dict(self) -> dict[str, object]:
        """All settings, with secrets (the Redis password) redacted."""
        out = asdict(self)
        out["session_redis_url"] = redact_url(self.session_redis_url)
        return out


def redact_url(url: str) -> str:
    """Replace any password in a URL with ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _env_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
