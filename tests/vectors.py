"""One loader for every vector file under tests/vectors/."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

VECTORS = Path(__file__).parent / "vectors"


@cache
def load(relative: str) -> dict:
    """Parse ``tests/vectors/<relative>`` (cached: the files are large)."""
    with open(VECTORS / relative, encoding="utf-8") as handle:
        return json.load(handle)


def protocol_cases() -> list[dict]:
    return load("protocol/pqc-hs-1.json")["cases"]


def hexbytes(value: str | None) -> bytes:
    return bytes.fromhex(value or "")
