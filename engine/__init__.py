"""pqc-engine's batch crypto engine: ML-KEM (FIPS 203) and ML-DSA (FIPS 204).

Public surface::

    from engine import Engine, EngineConfig, Kind
    with Engine(EngineConfig.from_env()) as eng:
        pair = eng.run_sync(Kind.KEM_KEYGEN, "ML-KEM-768", KemKeygenIn(seed))
"""

from engine.config import EngineConfig
from engine.engine import Engine, SigningKey
from engine.errors import (
    BackendUnavailable,
    ConfigError,
    EngineClosed,
    InvalidInput,
    PqcError,
    QueueFull,
    UnsupportedParameterSet,
)
from engine.ops import (
    KemDecapsIn,
    KemEncapsIn,
    KemEncapsOut,
    KemKeygenIn,
    KemKeyPair,
    Kind,
    OpKey,
    SigKeygenIn,
    SigKeyPair,
    SigSignIn,
    SigVerifyIn,
)
from engine.params import KEM_PARAMS, SIG_PARAMS, KemParams, SigParams

__all__ = [
    "KEM_PARAMS",
    "SIG_PARAMS",
    "BackendUnavailable",
    "ConfigError",
    "Engine",
    "EngineClosed",
    "EngineConfig",
    "InvalidInput",
    "KemDecapsIn",
    "KemEncapsIn",
    "KemEncapsOut",
    "KemKeyPair",
    "KemKeygenIn",
    "KemParams",
    "Kind",
    "OpKey",
    "PqcError",
    "QueueFull",
    "SigKeyPair",
    "SigKeygenIn",
    "SigParams",
    "SigSignIn",
    "SigVerifyIn",
    "SigningKey",
    "UnsupportedParameterSet",
]
