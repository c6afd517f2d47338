"""The pqc-engine command: help texts and the key-store subcommands."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from service.cli import main

COMMANDS = [
    [],
    ["serve"],
    ["handshake"],
    ["keys"],
    ["keys", "generate"],
    ["keys", "rotate"],
    ["keys", "backup"],
    ["keys", "restore"],
    ["keys", "export"],
    ["loadtest"],
    ["vectors"],
    ["offload"],
    ["bench"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_every_command_has_help(command: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: pqc-engine" in capsys.readouterr().out


def test_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "serve" in result.stdout and "handshake" in result.stdout


def test_keys_lifecycle(tmp_path, capsys) -> None:
    key_dir = str(tmp_path / "keys")
    assert main(["keys", "--key-dir", key_dir, "generate"]) == 0
    first = capsys.readouterr().out
    assert "ML-DSA-65: current key" in first

    assert (
        main(["keys", "--key-dir", key_dir, "rotate", "--algorithm", "ML-DSA-65"]) == 0
    )
    assert "ML-DSA-65: new current key" in capsys.readouterr().out

    exported = tmp_path / "pins.json"
    assert main(["keys", "--key-dir", key_dir, "export", "-o", str(exported)]) == 0
    document = json.loads(exported.read_text())
    statuses = sorted(
        k["status"] for k in document["signature_keys"] if k["algorithm"] == "ML-DSA-65"
    )
    assert statuses == ["current", "previous"]

    archive = tmp_path / "keys.tar"
    assert main(["keys", "--key-dir", key_dir, "backup", str(archive)]) == 0
    assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600
    restored = str(tmp_path / "restored")
    assert main(["keys", "--key-dir", restored, "restore", str(archive)]) == 0
    capsys.readouterr()
    assert main(["keys", "--key-dir", restored, "export"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["signature_keys"] == document["signature_keys"]


def test_memory_store_with_two_workers_is_refused(tmp_path, capsys) -> None:
    code = main(["serve", "--workers", "2", "--key-dir", str(tmp_path), "--port", "0"])
    assert code == 2
    assert "memory" in capsys.readouterr().err


def test_offload_switch_round_trip(tmp_path, capsys) -> None:
    key_dir = str(tmp_path / "keys")
    assert main(["offload", "status", "--key-dir", key_dir]) == 2
    assert "no key directory" in capsys.readouterr().err

    os.mkdir(key_dir, 0o700)
    assert main(["offload", "status", "--key-dir", key_dir]) == 0
    assert "not set" in capsys.readouterr().out

    assert main(["offload", "off", "--key-dir", key_dir]) == 0
    assert capsys.readouterr().out.strip() == "offload: off"
    assert stat.S_IMODE(os.stat(tmp_path / "keys" / "offload").st_mode) == 0o600

    assert main(["offload", "on", "--key-dir", key_dir]) == 0
    assert capsys.readouterr().out.strip() == "offload: on"
    assert main(["offload", "clear", "--key-dir", key_dir]) == 0
    assert "not set" in capsys.readouterr().out


def test_key_dir_is_accepted_after_the_subcommand(tmp_path, capsys) -> None:
    key_dir = str(tmp_path / "keys")
    assert main(["keys", "generate", "--key-dir", key_dir]) == 0
    capsys.readouterr()
    assert main(["keys", "export", "--key-dir", key_dir]) == 0
    assert len(json.loads(capsys.readouterr().out)["signature_keys"]) == 3


def test_a_mistyped_key_dir_is_refused(tmp_path, capsys) -> None:
    missing = str(tmp_path / "typo")
    assert main(["keys", "--key-dir", missing, "export"]) == 2
    assert "no key store" in capsys.readouterr().err
    assert not os.path.exists(missing)


def test_errors_are_one_line_not_tracebacks(tmp_path, capsys) -> None:
    missing = str(tmp_path / "pins.json")
    assert main(["handshake", "http://127.0.0.1:9", "--pin", missing]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pqc-engine: ") and "Traceback" not in err


def test_vectors_leave_out_files_that_are_not_vectors(tmp_path, capsys) -> None:
    not_vectors = tmp_path / "registration.json"
    not_vectors.write_text('{"algorithm": "ML-KEM", "mode": "registration"}')
    keygen = "tests/vectors/acvp/ML-DSA-keyGen-FIPS204/internalProjection.json"

    assert main(["vectors", str(not_vectors), keygen]) == 0
    captured = capsys.readouterr()
    assert "skipping" in captured.err and "registration.json" in captured.err
    assert "75 passed, 0 failed" in captured.out
