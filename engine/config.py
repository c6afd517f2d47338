"""Engine configuration: environment variables with the ``PQC_`` prefix.

Every field has a default that works on a bare machine; ``from_env`` reads
overrides and refuses values out of range with a sentence naming the
variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from engine.errors import ConfigError

OFFLOAD_MODES = ("auto", "on", "off")
CPU_BACKENDS = ("auto", "liboqs", "openssl")
BATCH_MAX_LIMIT = 1024


@dataclass(frozen=True)
class EngineConfig:
    """How the engine batches and which backends it uses."""

    offload: str = "auto"  # PQC_OFFLOAD
    device: str = "host"  # PQC_DEVICE: which device runtime
    device_id: int = 0  # PQC_DEVICE_ID
    device_threads: int = 0  # PQC_DEVICE_THREADS; 0 means one per core
    cpu_backend: str = "auto"  # PQC_CPU_BACKEND
    batch_max: int = 64  # PQC_BATCH_MAX
    batch_wait_us: int = 2000  # PQC_BATCH_WAIT_US
    queue_max: int = 4096  # PQC_QUEUE_MAX
    device_timeout_ms: int = 2000  # PQC_DEVICE_TIMEOUT_MS
    cpu_threads: int = 0  # PQC_CPU_THREADS; 0 means one per core

    def __post_init__(self) -> None:
        _choice("PQC_OFFLOAD", self.offload, OFFLOAD_MODES)
        _choice("PQC_CPU_BACKEND", self.cpu_backend, CPU_BACKENDS)
        _range("PQC_BATCH_MAX", self.batch_max, 1, BATCH_MAX_LIMIT)
        _range("PQC_BATCH_WAIT_US", self.batch_wait_us, 0, 10_000_000)
        _range("PQC_QUEUE_MAX", self.queue_max, 1, 10_000_000)
        _range("PQC_DEVICE_TIMEOUT_MS", self.device_timeout_ms, 1, 600_000)
        _range("PQC_DEVICE_THREADS", self.device_threads, 0, 1024)
        _range("PQC_CPU_THREADS", self.cpu_threads, 0, 1024)
        _range("PQC_DEVICE_ID", self.device_id, 0, 1024)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EngineConfig:
        """Build a config from ``PQC_*`` variables (``os.environ`` by default)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            name = "PQC_" + f.name.upper()
            if name in env:
                values[f.name] = parse_value(name, env[name], f.type)
        return cls(**values)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def parse_value(name: str, raw: str, kind: object) -> object:
    """Parse one environment value into the field's type, or say why not."""
    raw = raw.strip()
    if kind in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, not {raw!r}.") from None
    if kind in (float, "float"):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, not {raw!r}.") from None
    if kind in (bool, "bool"):
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{name} must be true or false, not {raw!r}.")
    return raw


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}.")


def _range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, not {value}.")
