"""The ``pqc-engine`` command: serve, handshake, keys, loadtest, vectors, offload,
bench.

Settings come from ``PQC_*`` environment variables; flags override them. A
served app's worker processes read the same variables, so ``serve`` writes
the merged settings back into its environment before starting them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from engine.errors import PqcError
from engine.params import SIG_PARAMS
from service.config import Settings

logger = logging.getLogger("service.cli")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format=LOG_FORMAT,
    )
    # One line per HTTP request is noise for a command-line user.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except (PqcError, OSError, ValueError) as exc:
        # Missing or unreadable files, bad JSON, refused settings: one line.
        print(f"pqc-engine: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        import httpx

        if not isinstance(exc, httpx.HTTPError):
            raise
        print(f"pqc-engine: cannot reach the server: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pqc-engine",
        description="Post-quantum handshakes (ML-KEM, ML-DSA) over a batch engine.",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("PQC_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _handshake_parser(sub)
    _keys_parser(sub)
    _loadtest_parser(sub)
    _vectors_parser(sub)
    _offload_parser(sub)
    _bench_parser(sub)
    return parser


# -- serve ---------------------------------------------------------------


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the HTTP handshake service",
        description="Run the pqc-hs/1 service. Defaults: 127.0.0.1:8000, memory "
        "session store, keys in PQC_KEY_DIR. Every PQC_* variable applies.",
    )
    p.add_argument("--host", help="address to bind (PQC_HOST)")
    p.add_argument("--port", type=int, help="port to bind (PQC_PORT)")
    p.add_argument("--workers", type=int, help="worker processes (PQC_WORKERS)")
    p.add_argument("--redis-url", help="use Redis for sessions, at this URL")
    p.add_argument("--key-dir", help="signing-key directory (PQC_KEY_DIR)")
    p.add_argument(
        "--offload",
        choices=["auto", "on", "off"],
        help="device offload (PQC_OFFLOAD)",
    )
    p.set_defaults(func=_serve)


def _serve_settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    changes: dict[str, object] = {}
    for name in ("host", "port", "workers", "key_dir"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.redis_url:
        changes.update(session_redis=True, session_redis_url=args.redis_url)
    if args.offload:
        from dataclasses import replace

        changes["engine"] = replace(settings.engine, offload=args.offload)
    return settings.with_overrides(log_level=args.log_level, **changes)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _serve_settings(args)
    if settings.workers > 1 and not settings.session_redis:
        raise PqcError(
            f"{settings.workers} workers need a shared session store, but the memory "
            "store serves one process only: set PQC_SESSION_REDIS=1 (and "
            "PQC_SESSION_REDIS_URL) or pass --redis-url, or run one worker."
        )
    os.environ.update(settings.to_env())
    logger.info("Starting with settings %s", json.dumps(settings.to_dict()))
    uvicorn.run(
        "service.api:create_app",
        log_config=_log_config(settings.log_level),
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=5,
    )
    return 0


def _log_config(level: str) -> dict:
    """uvicorn applies this in every worker process, so our loggers log there too."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "plain"}
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"level": level.upper()},
            "uvicorn.access": {"level": level.upper()},
        },
    }


# -- handshake -----------------------------------------------------------


def _handshake_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "handshake",
        help="do a pqc-hs/1 handshake against a server",
        description="Handshake with URL, check the session with the server, then "
        "delete it unless --keep. Prints the session (never its keys) as JSON.",
    )
    p.add_argument("url", help="server base URL, e.g. http://127.0.0.1:8000")
    p.add_argument(
        "--suite",
        action="append",
        help="suite to offer (repeatable, preference first)",
    )
    p.add_argument("--pin", help="trust only the keys in this exported keys file")
    p.add_argument("--keep", action="store_true", help="do not delete the session")
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for each answer (default: 10)",
    )
    p.set_defaults(func=_handshake)


def _handshake(args: argparse.Namespace) -> int:
    from service.client import PqcClient, load_pins

    pins = load_pins(args.pin) if args.pin else None
    if pins is None:
        print(
            "pqc-engine: no --pin given; trusting the server's keys on first use.",
            file=sys.stderr,
        )
    with PqcClient(
        args.url,
        pins=pins,
        trust_on_first_use=pins is None,
        suites=args.suite,
        timeout=args.timeout,
    ) as client:
        session = client.handshake()
        state = client.verify_session(session)
        if not args.keep:
            client.delete_session(session)
    out = {
        "session_id": session.session_id,
        "suite": session.suite,
        "expires_at": session.expires_at,
        "handshake_hash": session.handshake_hash,
        "state": state["state"],
        "deleted": not args.keep,
    }
    print(json.dumps(out, indent=2))
    return 0


# -- loadtest --------------------------------------------------------------


def _loadtest_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "loadtest",
        help="run concurrent whole handshakes against a server",
        description="N concurrent clients do complete handshakes (hello and "
        "key-exchange, checked as the SDK's handshake() does) for T seconds; "
        "prints handshakes per second, p50/p95/p99 latency, errors by code and "
        "the server's mean batch size.",
    )
    p.add_argument("url", help="server base URL, e.g. http://127.0.0.1:8000")
    p.add_argument(
        "--concurrency", "-c", type=int, default=64, help="clients (default: 64)"
    )
    p.add_argument(
        "--duration", "-d", type=float, default=10.0, help="seconds (default: 10)"
    )
    p.add_argument("--suite", action="append", help="suite to offer (repeatable)")
    p.add_argument(
        "--processes",
        "-p",
        type=int,
        default=1,
        help="client processes to spread the clients over (default 1)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="also make one session verify call on each new session",
    )
    p.add_argument("--json", help="also write the report to this JSON file")
    p.set_defaults(func=_loadtest)


def _loadtest(args: argparse.Namespace) -> int:
    from service.loadtest import main as run

    return run(args)


# -- offload ---------------------------------------------------------------


def _offload_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "offload",
        help="switch the device path of running servers on or off",
        description="Switch offload for every server using this key directory "
        "(PQC_KEY_DIR or --key-dir); they follow within a second. Servers "
        "started with PQC_OFFLOAD=off never open the device and ignore it.",
    )
    p.add_argument(
        "state",
        choices=["on", "off", "clear", "status"],
        help="on/off: set the switch (it also applies to servers started "
        "later); clear: remove it so that PQC_OFFLOAD applies again",
    )
    p.add_argument("--key-dir", help="the servers' key directory (PQC_KEY_DIR)")
    p.set_defaults(func=_offload)


def _offload(args: argparse.Namespace) -> int:
    from service.control import OffloadSwitch

    key_dir = args.key_dir or Settings.from_env().key_dir
    if not os.path.isdir(key_dir):
        raise PqcError(
            f"There is no key directory at {key_dir}: the switch lives in the "
            "servers' key directory (--key-dir or PQC_KEY_DIR)."
        )
    switch = OffloadSwitch(key_dir)
    if args.state == "clear":
        switch.clear()
    elif args.state != "status":
        switch.write(args.state == "on")
    value = switch.read()
    shown = "on" if value else "off"
    if value is None:
        shown = "not set (PQC_OFFLOAD applies)"
    print(f"offload: {shown}")
    return 0


# -- keys ------------------------------------------------------------------


def _keys_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "keys",
        help="manage the signing-key directory",
        description="Manage the ML-DSA signing keys in PQC_KEY_DIR (or --key-dir).",
    )
    p.add_argument("--key-dir", help="signing-key directory (PQC_KEY_DIR)")
    # Also accepted after the subcommand; SUPPRESS keeps a value given before.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--key-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    ksub = p.add_subparsers(dest="keys_command", required=True)

    def add(name: str, **kw: object) -> argparse.ArgumentParser:
        return ksub.add_parser(name, parents=[common], **kw)

    gen = add("generate", help="create a current key where none exists")
    _algorithms_option(gen)
    gen.set_defaults(func=_keys_generate)

    rot = add("rotate", help="make new current keys; old ones stay listed")
    _algorithms_option(rot)
    rot.set_defaults(func=_keys_rotate)

    back = add("backup", help="write a 0600 archive of the key store")
    back.add_argument("archive")
    back.set_defaults(func=_keys_backup)

    rest = add("restore", help="restore the key store from an archive")
    rest.add_argument("archive")
    rest.set_defaults(func=_keys_restore)

    exp = add("export", help="print the public keys document, for clients to pin")
    exp.add_argument("--output", "-o", help="write to this file instead of stdout")
    exp.set_defaults(func=_keys_export)


def _algorithms_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--algorithm",
        action="append",
        choices=list(SIG_PARAMS),
        help="ML-DSA parameter set (repeatable; default: all three)",
    )


def _keystore(args: argparse.Namespace, *, create: bool = False):
    from service.keystore import KeyStore

    settings = Settings.from_env()
    key_dir = args.key_dir or settings.key_dir
    if not create and not os.path.isdir(key_dir):
        raise PqcError(
            f"There is no key store at {key_dir}; check --key-dir or PQC_KEY_DIR "
            "(pqc-engine keys generate creates one)."
        )
    return KeyStore(key_dir, rotation_days=settings.key_rotation_days)


def _keys_generate(args: argparse.Namespace) -> int:
    store = _keystore(args, create=True)
    algorithms = args.algorithm or list(SIG_PARAMS)
    store.ensure(algorithms)
    for algorithm in algorithms:
        print(f"{algorithm}: current key {store.current(algorithm).key_id}")
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    store = _keystore(args)
    for record in store.rotate(args.algorithm or None):
        print(f"{record.algorithm}: new current key {record.key_id}")
    return 0


def _keys_backup(args: argparse.Namespace) -> int:
    _keystore(args).backup(args.archive)
    print(f"backed up to {args.archive}")
    return 0


def _keys_restore(args: argparse.Namespace) -> int:
    _keystore(args, create=True).restore(args.archive)
    print(f"restored from {args.archive}")
    return 0


def _keys_export(args: argparse.Namespace) -> int:
    store = _keystore(args)
    document = {
        "protocol": "pqc-hs/1",
        "signature_keys": [
            {**record.public_info(), "status": status}
            for record, status in store.published()
        ],
    }
    text = json.dumps(document, indent=2)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    else:
        print(text)
    return 0


# -- vectors ---------------------------------------------------------------


def _vectors_parser(sub: argparse._SubParsersAction) -> None:
    def batch_size(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
        return int(text)

    p = sub.add_parser(
        "vectors",
        help="run ACVP and Wycheproof vector files through a backend",
        description="Run NIST ACVP and Wycheproof ML-KEM / ML-DSA vector files "
        "through one backend, in batches, and print passed, failed and skipped "
        "cases per file and test group. Exits 1 if any case failed.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="vector file (JSON)")
    p.add_argument(
        "--backend",
        choices=["device", "openssl", "liboqs"],
        default="openssl",
        help="backend to test (default: openssl)",
    )
    p.add_argument(
        "--batch",
        type=batch_size,
        default=64,
        help="lanes per run_batch call (default: 64)",
    )
    p.set_defaults(func=_vectors)


def _vectors(args: argparse.Namespace) -> int:
    from engine.vectors import backend_by_name, run_files

    files = _vector_files(args.files)
    if not files:
        raise PqcError("None of the given files is an ACVP or Wycheproof vector file.")
    backend = backend_by_name(args.backend)
    try:
        report = run_files(files, backend, batch=args.batch)
    finally:
        backend.close()
    print(report.render())
    return 0 if report.ok else 1


def _vector_files(paths: Sequence[str]) -> list[str]:
    """The paths that hold vectors; the others are named and left out."""
    from engine.vectors import VectorFileError, load_file

    kept = []
    for path in paths:
        try:
            load_file(path)
        except VectorFileError as exc:
            print(f"pqc-engine: skipping {path}: {exc}", file=sys.stderr)
            continue
        kept.append(path)
    return kept


# -- bench -----------------------------------------------------------------


def _bench_parser(sub: argparse._SubParsersAction) -> None:
    from engine import bench

    p = sub.add_parser(
        "bench",
        help="operations per second by backend over batch sizes",
        description="Time run_batch on each backend over a batch-size sweep in "
        "one process, the backends taking turns point by point over several "
        "rounds. Prints ops/s (median over rounds), batch latency (p50, p95) "
        "and the device/CPU ratio at equal batch size.",
    )
    lists = (
        ("--ops", bench.DEFAULT_OPS, "operations"),
        ("--params", bench.DEFAULT_PARAMS, "parameter sets"),
        ("--backends", bench.DEFAULT_BACKENDS, "backends"),
        ("--batches", bench.DEFAULT_BATCHES, "batch sizes"),
    )
    for flag, default, what in lists:
        shown = ",".join(map(str, default))
        p.add_argument(flag, help=f"comma-separated {what} (default: {shown})")
    p.add_argument(
        "--seconds",
        type=float,
        default=bench.DEFAULT_SECONDS,
        help="timed seconds per point and round (default: %(default)s)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=bench.DEFAULT_ROUNDS,
        help="rounds over the whole sweep (default: %(default)s)",
    )
    p.add_argument("--json", metavar="FILE", help="write results and machine here")
    p.add_argument("--plot", metavar="FILE", help="draw ops/s by batch (PNG)")
    p.add_argument(
        "--progress",
        action="store_true",
        help="show the progress bar even when stderr is not a terminal",
    )
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from engine.bench import main as run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
