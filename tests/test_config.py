"""Settings from PQC_* variables: defaults, parsing, refusal, redaction."""

from __future__ import annotations

import pytest

from engine.config import EngineConfig
from engine.errors import ConfigError
from service.config import Settings, redact_url


def test_defaults_work_on_a_bare_machine() -> None:
    settings = Settings.from_env({})

    assert settings.session_redis is False
    assert settings.engine.offload == "auto"
    assert settings.engine.cpu_backend == "auto"
    assert (settings.kem_algorithm, settings.sig_algorithm) == (
        "ML-KEM-768",
        "ML-DSA-65",
    )
    assert settings.session_ttl_seconds == 3600
    assert settings.access_log is False


def test_environment_overrides() -> None:
    env = {
        "PQC_SESSION_REDIS": "true",
        "PQC_SESSION_REDIS_URL": "redis://127.0.0.1:6390/2",
        "PQC_BATCH_MAX": "32",
        "PQC_BATCH_WAIT_US": "500",
        "PQC_OFFLOAD": "off",
        "PQC_SESSION_TTL_SECONDS": "10.5",
        "PQC_KEY_DIR": "/tmp/somewhere",
        "PQC_ACCESS_LOG": "true",
    }
    settings = Settings.from_env(env)

    assert settings.session_redis is True
    assert settings.engine.batch_max == 32
    assert settings.engine.batch_wait_us == 500
    assert settings.engine.offload == "off"
    assert settings.session_ttl_seconds == 10.5
    assert settings.key_dir == "/tmp/somewhere"
    assert settings.access_log is True


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PQC_BATCH_MAX", "zero", "integer"),
        ("PQC_BATCH_MAX", "0", "between"),
        ("PQC_OFFLOAD", "maybe", "one of"),
        ("PQC_CPU_BACKEND", "gpu", "one of"),
        ("PQC_SESSION_REDIS", "perhaps", "true or false"),
        ("PQC_SESSION_TTL_SECONDS", "-1", "greater than zero"),
        ("PQC_KEM_ALGORITHM", "Kyber768", "unknown"),
        ("PQC_WORKERS", "0", "between"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Settings.from_env({name: value})
    assert name in str(info.value)


def test_to_dict_redacts_the_redis_password() -> None:
    url = "redis://user:s3cret-pw@127.0.0.1:6390/0"
    settings = Settings.from_env({"PQC_SESSION_REDIS_URL": url})

    shown = settings.to_dict()
    assert "s3cret-pw" not in repr(shown)
    assert shown["session_redis_url"] == "redis://user:***@127.0.0.1:6390/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_to_env_round_trips() -> None:
    settings = Settings.from_env({"PQC_BATCH_MAX": "16", "PQC_SESSION_REDIS": "1"})
    assert Settings.from_env(settings.to_env()) == settings


def test_engine_config_alone() -> None:
    assert EngineConfig.from_env({"PQC_QUEUE_MAX": "7"}).queue_max == 7
