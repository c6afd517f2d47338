"""pqc-engine loadtest against a real server: counts, latency, JSON report."""

from __future__ import annotations

import json

import pytest

from service.cli import main
from service.client import client_error
from service.loadtest import _report, run_load


@pytest.mark.timeout(60)
def test_short_load_completes_handshakes(default_server) -> None:
    report = run_load(default_server.url, concurrency=4, duration=1.0)

    assert report.handshakes > 0
    assert report.errors == {}
    assert report.handshakes_per_s > 0
    lat = report.latency_ms
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    # hello + key-exchange: at least keygen, sign and decaps per handshake
    assert report.server_operations >= 3 * report.handshakes
    assert report.server_mean_batch_size >= 1


@pytest.mark.timeout(60)
def test_verify_adds_one_session_call_per_handshake(default_server) -> None:
    def verify_calls() -> int:  # from the server's access log
        return default_server.log_text().count("POST /api/pqc/session/verify")

    before = verify_calls()
    plain = run_load(default_server.url, concurrency=2, duration=0.5)
    between = verify_calls()
    checked = run_load(default_server.url, concurrency=2, duration=0.5, verify=True)

    assert between == before and plain.verify is False
    assert checked.verify is True and checked.handshakes > 0
    assert checked.errors == {}
    assert verify_calls() - between == checked.handshakes
    assert "session verify" in checked.render()
    assert "session verify" not in plain.render()


@pytest.mark.timeout(60)
def test_cli_writes_json(default_server, tmp_path, capsys) -> None:
    out = tmp_path / "load.json"
    code = main(
        ["loadtest", default_server.url, "-c", "2", "-d", "0.5", "--json", str(out)]
    )

    assert code == 0
    assert "handshakes/s" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["concurrency"] == 2 and data["handshakes"] > 0


@pytest.mark.timeout(60)
def test_refused_handshakes_are_counted_by_code(default_server) -> None:
    report = run_load(default_server.url, 2, 0.5, suites=["NO-SUCH-SUITE"])

    assert report.handshakes == 0
    assert report.errors.get("no_common_suite", 0) > 0


@pytest.mark.parametrize("duration", [float("nan"), float("inf"), 0.0, -1.0])
def test_durations_must_be_finite_and_positive(duration) -> None:
    with pytest.raises(ValueError):
        run_load("http://127.0.0.1:9", 1, duration)


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ({"error": {"code": "overloaded", "message": "x"}}, "overloaded"),
        ({"error": "boom"}, "http_500"),
        ([1, 2], "http_500"),
        (None, "http_500"),
        ({"error": {"code": 5}}, "http_500"),
    ],
)
def test_error_codes_from_any_error_body(answer, code) -> None:
    assert client_error(answer, 500).code == code


def test_a_report_without_server_statistics_says_so() -> None:
    report = _report("http://x", 2, 1.0, ["S"], [0.01, 0.02], {}, None, None)

    assert report.handshakes == 2 and report.server_batches == 0
    assert "server batches unknown" in report.render()
