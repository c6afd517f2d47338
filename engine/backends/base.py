"""The backend protocol shared by the CPU libraries and the device path.

A backend declares the (kind, parameter set) pairs it serves and runs a
whole batch of one pair in one call. It returns one entry per lane, in lane
order: the lane's result, or an ``InvalidInput`` for a lane whose input it
refused. A batch-wide failure (the library or device broke) is raised as
``BackendUnavailable`` so that the engine can re-run the batch elsewhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from engine.errors import InvalidInput
from engine.ops import OpKey


class Backend(ABC):
    """A provider of batched ML-KEM and ML-DSA operations."""

    #: short name shown in health and statistics ("openssl", "liboqs", "device")
    name: str = "abstract"
    #: "cpu" or "device"
    path: str = "cpu"
    #: whether caller-given encapsulation coins and signing rnd are honoured
    deterministic: bool = False

    @abstractmethod
    def capabilities(self) -> frozenset[OpKey]:
        """The (kind, parameter set) pairs this backend serves."""

    def serves(self, key: OpKey) -> bool:
        return key in self.capabilities()

    @abstractmethod
    def run_batch(self, key: OpKey, lanes: Sequence[tuple]) -> list[object]:
        """Run every lane of one batch; see the module docstring."""

    @abstractmethod
    def load_signing_key(self, slot: int, param: str, seed: bytes) -> bytes:
        """Expand the signing key ``seed`` into ``slot``; return its public key."""

    @abstractmethod
    def drop_signing_key(self, slot: int) -> None:
        """Forget the key in ``slot``; unknown slots are ignored."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release threads and device resources."""

    def describe(self) -> dict[str, object]:
        """What health and statistics show about this backend."""
        return {"name": self.name, "path": self.path}


def check_bytes(what: str, value: object, expected: int | None = None) -> bytes:
    """Return ``value`` as bytes, or raise the error the style guide asks for.

    A wrong type is a ``TypeError``; a wrong length is ``InvalidInput`` (a
    ``ValueError``) naming the expected and actual sizes.
    """
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}.")
    data = bytes(value)
    if expected is not None and len(data) != expected:
        raise InvalidInput(
            f"{what} must be {expected} bytes long, but it is {len(data)} bytes."
        )
    return data
