"""Run-time switches shared by every worker: the offload toggle.

``pqc-engine offload on|off`` writes a small file in the key directory,
which every server process already shares; each worker looks at it at most
once a second (with its key-store check) and switches the engine's device
path on or off. No restart, no HTTP admin surface, and all workers on the
host follow the same switch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from engine.errors import ConfigError

logger = logging.getLogger(__name__)

OFFLOAD_FILE = "offload"


class OffloadSwitch:
    """The offload toggle file in ``key_dir``: "on", "off", or absent."""

    def __init__(self, key_dir: str | os.PathLike[str]) -> None:
        self.path = Path(key_dir) / OFFLOAD_FILE
        self._seen: tuple[int, int] | None = None  # absent at start

    def write(self, enabled: bool) -> None:
        """Set the switch atomically (a 0600 temp file renamed into place)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = self.path.with_name(f".{OFFLOAD_FILE}.{os.getpid()}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"on\n" if enabled else b"off\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, self.path)

    def read(self) -> bool | None:
        """The switch's value, or None when it was never set."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        if text not in ("on", "off"):
            raise ConfigError(f"{self.path} must say 'on' or 'off', not {text!r}.")
        return text == "on"

    def clear(self) -> None:
        """Remove the switch, so that servers follow PQC_OFFLOAD again."""
        self.path.unlink(missing_ok=True)

    def changed(self, default: bool) -> bool | None:
        """The switch's value if it changed since the last call, else None.

        A removed switch reads as ``default`` (what PQC_OFFLOAD said).
        """
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._seen:
            return None
        self._seen = stamp
        if stamp is None:
            return default
        try:
            value = self.read()
        except ConfigError as exc:
            logger.error("Ignoring the offload switch: %s", exc)
            return None
        return default if value is None else value
