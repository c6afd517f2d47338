"""``pqc-engine bench``: the sweep, its report, its plot and its refusals.

Every run here is real (the device kernels and OpenSSL) but tiny: a few
hundredths of a second per point. Nothing asserts a speed; the rates are
checked for being there, positive and consistent with one another.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import sys

import cryptography
import numpy
import pytest
from cryptography.hazmat.backends.openssl import backend as ossl

from engine.bench import CPU_FLAGS, BenchPlan, Progress, percentile
from engine.errors import ConfigError
from engine.ops import Kind, OpKey
from service.cli import main

TINY = ["--seconds", "0.02", "--batches", "1,4", "--rounds", "2"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BOTH = ["device", "openssl"]


@pytest.fixture(autouse=True)
def _built_device(monkeypatch) -> None:
    # The device must be the built one, whatever the caller's shell says.
    monkeypatch.delenv("PQC_DEVICE", raising=False)


def _bench(*argv: str) -> tuple[int, str, str]:
    """Run the command in-process; return its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--log-level", "warning", "bench", *argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict:
    """One tiny sweep on both backends, with JSON, plot and progress bar."""
    out = tmp_path_factory.mktemp("bench")
    code, printed, err = _bench(
        *("--ops", "kem_encaps,sig_sign"),
        *("--params", "ML-KEM-768,ML-DSA-44"),
        *("--backends", ",".join(BOTH)),
        *TINY,
        *("--json", str(out / "bench.json"), "--plot", str(out / "bench.png")),
        "--progress",
    )
    assert code == 0, err
    return {
        "out": printed,
        "err": err,
        "report": json.loads((out / "bench.json").read_text()),
        "png": (out / "bench.png").read_bytes(),
    }


# -- the sweep's results -------------------------------------------------------


@pytest.mark.timeout(60)
def test_every_point_has_both_backends(sweep: dict) -> None:
    points = sweep["report"]["points"]
    expected = {
        ("kem_encaps", "ML-KEM-768", 1),
        ("kem_encaps", "ML-KEM-768", 4),
        ("sig_sign", "ML-DSA-44", 1),
        ("sig_sign", "ML-DSA-44", 4),
    }
    assert {(p["op"], p["param"], p["batch"]) for p in points} == expected
    for point in points:
        assert sorted(point["results"]) == BOTH
        assert point["not_served"] == []
        for result in point["results"].values():
            _check_result(result, rounds=2)


def _check_result(result: dict, rounds: int) -> None:
    assert result["ops_per_s"] > 0
    assert len(result["ops_per_s_rounds"]) == rounds
    assert min(result["ops_per_s_rounds"]) <= result["ops_per_s"]
    assert result["ops_per_s"] <= max(result["ops_per_s_rounds"])
    assert result["calls"] >= rounds
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p95"]


@pytest.mark.timeout(60)
def test_ratios_are_device_over_cpu(sweep: dict) -> None:
    for point in sweep["report"]["points"]:
        rates = {n: r["ops_per_s"] for n, r in point["results"].items()}
        ratio = point["ratios"]["device/openssl"]
        assert ratio == pytest.approx(rates["device"] / rates["openssl"], rel=1e-2)


@pytest.mark.timeout(60)
def test_machine_details(sweep: dict) -> None:
    machine = sweep["report"]["machine"]
    assert machine["cpu_model"]
    assert set(machine["cpu_flags"]) == set(CPU_FLAGS)
    assert all(isinstance(v, bool) for v in machine["cpu_flags"].values())
    assert machine["cores"] == os.cpu_count()
    assert machine["python"].endswith(sys.version.split()[0])
    assert machine["openssl"] == ossl.openssl_version_text()
    assert machine["cryptography"] == cryptography.__version__
    assert machine["numpy"] == numpy.__version__
    assert machine["device"]["runtime"] == "host"
    assert machine["device"]["implementation"]
    assert machine["backends"]["openssl"]["threads"] == os.cpu_count()
    when = datetime.datetime.fromisoformat(machine["date_utc"])
    assert when.utcoffset() == datetime.timedelta(0)


@pytest.mark.timeout(60)
def test_settings_and_command_line(sweep: dict) -> None:
    report = sweep["report"]
    assert report["settings"]["backends"] == BOTH
    assert report["settings"]["batches"] == [1, 4]
    assert report["settings"]["rounds"] == 2
    assert report["skipped_backends"] == {}
    assert report["command"].startswith("pqc-engine bench --ops kem_encaps,sig_sign")
    assert "--batches 1,4 --seconds 0.02 --rounds 2" in report["command"]


@pytest.mark.timeout(60)
def test_plot_is_a_png(sweep: dict) -> None:
    assert sweep["png"].startswith(PNG_MAGIC)
    assert len(sweep["png"]) > 10_000  # axes, four lines and labels


@pytest.mark.timeout(60)
def test_table_is_printed(sweep: dict) -> None:
    lines = sweep["out"].splitlines()
    header = lines[0].split()
    assert header[:3] == ["op", "param", "batch"]
    assert "device/openssl" in header
    rows = [line.split() for line in lines[1:5]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("kem_encaps", "ML-KEM-768", "1"),
        ("kem_encaps", "ML-KEM-768", "4"),
        ("sig_sign", "ML-DSA-44", "1"),
        ("sig_sign", "ML-DSA-44", "4"),
    ]
    assert any(line.startswith("cpu: ") for line in lines)


@pytest.mark.timeout(60)
def test_progress_bar_counts_every_step(sweep: dict) -> None:
    # 2 keys x 2 batches x 2 backends x 2 rounds
    err = sweep["err"]
    assert "\r[" in err and "1/16 kem_encaps ML-KEM-768 device b1" in err
    assert err.rstrip().endswith("16/16 done")


@pytest.mark.timeout(60)
def test_every_kind_runs_on_both_backends(tmp_path) -> None:
    path = tmp_path / "all.json"
    code, _, err = _bench(
        *("--params", "ML-KEM-768,ML-DSA-65", "--backends", ",".join(BOTH)),
        *("--batches", "2", "--seconds", "0.01", "--rounds", "1"),
        *("--json", str(path)),
    )
    assert code == 0, err
    points = json.loads(path.read_text())["points"]
    assert sorted(p["op"] for p in points) == sorted(k.value for k in Kind)
    for point in points:
        assert sorted(point["results"]) == BOTH
        _check_result(point["results"]["device"], rounds=1)
    assert "\r[" not in err  # stderr is not a terminal and --progress is absent


# -- refusals --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--ops", "kem_foo"], ["'kem_foo'", "kem_keygen", "sig_verify"]),
        (["--params", "ML-KEM-999"], ["'ML-KEM-999'", "ML-KEM-512", "ML-DSA-87"]),
        (["--backends", "gpu,openssl"], ["'gpu'", "device", "openssl", "liboqs"]),
        (["--batches", "0"], ["'0'", "1 to 1024"]),
        (["--batches", "4,x"], ["'x'", "1 to 1024"]),
        (["--seconds", "0"], ["--seconds must be positive"]),
        (["--rounds", "0"], ["--rounds must be at least 1"]),
        (["--ops", "sig_sign", "--params", "ML-KEM-768"], ["ML-DSA-* set"]),
    ],
    ids=[
        "op",
        "param",
        "backend",
        "batch-zero",
        "batch-word",
        "seconds",
        "rounds",
        "no-pair",
    ],
)
def test_bad_arguments_exit_2(argv: list[str], words: list[str]) -> None:
    code, out, err = _bench(*argv)

    assert code == 2
    assert out == ""
    assert err.startswith("pqc-engine: ")
    for word in words:
        assert word in err


@pytest.mark.timeout(60)
def test_unavailable_backend_is_skipped(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PQC_DEVICE", "absent")
    path = tmp_path / "skip.json"
    code, out, err = _bench(
        *("--ops", "kem_keygen", "--params", "ML-KEM-768"),
        *("--backends", ",".join(BOTH), "--batches", "1"),
        *("--seconds", "0.01", "--rounds", "1", "--json", str(path)),
    )

    assert code == 0
    assert "skipping the device backend" in err and "'absent'" in err
    report = json.loads(path.read_text())
    assert "device" in report["skipped_backends"]
    assert list(report["points"][0]["results"]) == ["openssl"]
    assert report["points"][0]["ratios"] == {}
    assert "device: skipped" in out


@pytest.mark.timeout(60)
def test_the_only_backend_unavailable_exits_2(monkeypatch) -> None:
    monkeypatch.setenv("PQC_DEVICE", "absent")
    code, out, err = _bench("--backends", "device", "--seconds", "0.01")

    assert code == 2
    assert out == ""
    assert "No backend to measure: device" in err


@pytest.mark.timeout(60)
def test_plot_without_matplotlib_exits_2_before_running(monkeypatch) -> None:
    # A None entry in sys.modules makes the import fail as if not installed.
    for name in ("matplotlib.backends.backend_agg", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)
    code, out, err = _bench("--backends", "openssl", "--plot", "/nonexistent.png")

    assert code == 2
    assert out == ""
    assert "--plot needs matplotlib, which is not installed" in err


def test_help_lists_the_defaults(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bench", "--help"])
    assert info.value.code == 0
    assert "(default: device,openssl)" in capsys.readouterr().out


# -- the pieces ------------------------------------------------------------------


def test_plan_pairs_kinds_with_their_parameter_sets() -> None:
    plan = BenchPlan.from_text("kem_decaps,sig_verify", "ML-DSA-87,ML-KEM-512")
    assert plan.op_keys() == [
        OpKey(Kind.KEM_DECAPS, "ML-KEM-512"),
        OpKey(Kind.SIG_VERIFY, "ML-DSA-87"),
    ]
    assert plan.backends == ("device", "openssl")
    assert plan.batches == (1, 8, 64, 256)


def test_plan_sorts_and_dedupes_batches() -> None:
    plan = BenchPlan.from_text(batches="64, 1,8,1")
    assert plan.batches == (1, 8, 64)
    with pytest.raises(ConfigError):
        BenchPlan.from_text(batches="1025")


@pytest.mark.parametrize(
    ("q", "expected"), [(0.0, 1.0), (0.5, 5.0), (0.95, 10.0), (0.9, 9.0)]
)
def test_percentile_is_nearest_rank(q: float, expected: float) -> None:
    assert percentile([float(x) for x in range(1, 11)], q) == expected


def test_progress_redraws_one_line() -> None:
    stream = io.StringIO()
    bar = Progress(4, stream, width=8)
    bar.start("kem_encaps ML-KEM-768 device b64")
    bar.advance()
    bar.start("x")
    bar.advance()
    bar.finish()

    frames = stream.getvalue().split("\r")[1:]
    assert frames[0] == "[--------] 1/4 kem_encaps ML-KEM-768 device b64"
    assert frames[1].rstrip() == "[##------] 2/4 x"
    assert len(frames[1]) == len(frames[0])  # pads over the longer line
    assert frames[2].rstrip() == "[####----] 2/4 done"
    assert stream.getvalue().endswith("\n")
