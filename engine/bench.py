"""``pqc-engine bench``: operations per second by backend over a batch sweep.

Every backend runs in this one process, and the backends take turns point
by point (device, openssl, device, openssl, ... for each operation,
parameter set and batch size), over several rounds, so that drift in the
machine's speed (turbo, neighbours, thermal limits) hits all of them alike.
A point times ``backend.run_batch(key, lanes)`` with ``time.perf_counter``
over repeated calls for about ``seconds``; the lanes, and the keys they
need, are made beforehand by the backend itself (``engine.lanes``).

Per point the report gives operations per second (the median over rounds),
the latency of one batch call (median and p95 over every call) and, at
equal batch size, the ratio of the device's rate to each CPU backend's.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from engine.config import BATCH_MAX_LIMIT, EngineConfig
from engine.errors import BackendUnavailable, ConfigError, PqcError
from engine.lanes import make_lanes
from engine.ops import Kind, OpKey
from engine.params import KEM_PARAMS, SIG_PARAMS
from engine.vectors import BACKEND_NAMES, backend_by_name

DEFAULT_OPS = tuple(kind.value for kind in Kind)
DEFAULT_PARAMS = ("ML-KEM-768", "ML-DSA-65")
DEFAULT_BACKENDS = ("device", "openssl")
DEFAULT_BATCHES = (1, 8, 64, 256)
DEFAULT_SECONDS = 0.5
DEFAULT_ROUNDS = 3
CPU_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512vl", "bmi2", "sha_ni")


# -- what to run -------------------------------------------------------------


@dataclass(frozen=True)
class BenchPlan:
    """The sweep: operations x parameter sets x batch sizes, on each backend."""

    kinds: tuple[Kind, ...]
    params: tuple[str, ...]
    backends: tuple[str, ...]
    batches: tuple[int, ...]
    seconds: float = DEFAULT_SECONDS
    rounds: int = DEFAULT_ROUNDS

    @classmethod
    def from_text(
        cls,
        ops: str | None = None,
        params: str | None = None,
        backends: str | None = None,
        batches: str | None = None,
        seconds: float = DEFAULT_SECONDS,
        rounds: int = DEFAULT_ROUNDS,
    ) -> BenchPlan:
        """Parse comma-separated lists; ``None`` takes the default."""
        valid_params = (*KEM_PARAMS, *SIG_PARAMS)
        plan = cls(
            kinds=tuple(
                Kind(x) for x in _names(ops, DEFAULT_OPS, DEFAULT_OPS, "operation")
            ),
            params=_names(params, DEFAULT_PARAMS, valid_params, "parameter set"),
            backends=_names(backends, DEFAULT_BACKENDS, BACKEND_NAMES, "backend"),
            batches=_batches(batches),
            seconds=seconds,
            rounds=rounds,
        )
        plan.check()
        return plan

    def check(self) -> None:
        if not self.seconds > 0:
            raise ConfigError(f"--seconds must be positive, not {self.seconds}.")
        if self.rounds < 1:
            raise ConfigError(f"--rounds must be at least 1, not {self.rounds}.")
        if not self.op_keys():
            raise ConfigError(
                "No operation matches a parameter set: ML-KEM operations "
                "(kem_*) need an ML-KEM-* set and ML-DSA operations (sig_*) an "
                "ML-DSA-* set."
            )

    def op_keys(self) -> list[OpKey]:
        """Every (operation, parameter set) pair that exists, operation first."""
        return [
            OpKey(kind, param)
            for kind in self.kinds
            for param in self.params
            if kind.is_kem == (param in KEM_PARAMS)
        ]

    def command_line(self, json_path: str | None, plot_path: str | None) -> str:
        """The command that repeats this run."""
        words = [
            "pqc-engine bench",
            "--ops " + ",".join(kind.value for kind in self.kinds),
            "--params " + ",".join(self.params),
            "--backends " + ",".join(self.backends),
            "--batches " + ",".join(map(str, self.batches)),
            f"--seconds {self.seconds:g}",
            f"--rounds {self.rounds}",
        ]
        words += [f"--json {json_path}"] if json_path else []
        words += [f"--plot {plot_path}"] if plot_path else []
        return " ".join(words)


def _names(
    text: str | None, default: Sequence[str], valid: Sequence[str], what: str
) -> tuple[str, ...]:
    if text is None:
        return tuple(default)
    names = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    unknown = [x for x in names if x not in valid]
    choices = f"Give a comma-separated list of these: {', '.join(valid)}."
    if not names:
        raise ConfigError(f"No {what} is named in {text!r}. {choices}")
    if unknown:
        shown = ", ".join(repr(x) for x in unknown)
        raise ConfigError(f"Unknown {what}: {shown}. {choices}")
    return names


def _batches(text: str | None) -> tuple[int, ...]:
    if text is None:
        return DEFAULT_BATCHES
    sizes: list[int] = []
    for word in filter(None, (x.strip() for x in text.split(","))):
        if not word.isdigit() or not 1 <= int(word) <= BATCH_MAX_LIMIT:
            raise ConfigError(
                f"{word!r} is not a batch size: give whole numbers from 1 to "
                f"{BATCH_MAX_LIMIT}, comma-separated."
            )
        sizes.append(int(word))
    if not sizes:
        raise ConfigError("--batches needs at least one batch size.")
    return tuple(sorted(set(sizes)))


# -- measuring ---------------------------------------------------------------


@dataclass
class Series:
    """One backend at one point: a rate per round, a time per call."""

    rates: list[float] = field(default_factory=list)  # operations per second
    calls: list[float] = field(default_factory=list)  # seconds per run_batch

    def summary(self) -> dict[str, object]:
        ordered = sorted(self.calls)
        return {
            "ops_per_s": round(statistics.median(self.rates), 1),
            "ops_per_s_rounds": [round(r, 1) for r in self.rates],
            "latency_ms": {
                "p50": round(1e3 * statistics.median(ordered), 4),
                "p95": round(1e3 * percentile(ordered, 0.95), 4),
            },
            "calls": len(ordered),
        }


@dataclass
class Point:
    key: OpKey
    batch: int
    series: dict[str, Series] = field(default_factory=dict)

    def ratios(self, paths: dict[str, str]) -> dict[str, float]:
        """Device rate over each CPU backend's rate, at this batch size."""
        rate = {name: statistics.median(s.rates) for name, s in self.series.items()}
        return {
            f"{dev}/{cpu}": round(rate[dev] / rate[cpu], 3)
            for dev in rate
            if paths[dev] == "device"
            for cpu in rate
            if paths[cpu] == "cpu"
        }


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of an ascending sequence."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def time_batches(backend, key: OpKey, lanes: Sequence[tuple], seconds: float):
    """Seconds per ``run_batch`` call, repeated until ``seconds`` are spent."""
    calls: list[float] = []
    spent = 0.0
    while spent < seconds or not calls:
        start = time.perf_counter()
        backend.run_batch(key, lanes)
        took = time.perf_counter() - start
        calls.append(took)
        spent += took
    return calls


def check_results(name: str, key: OpKey, results: Sequence[object], n: int) -> None:
    """A rate of refusals is no rate: every lane must have succeeded."""
    bad = [r for r in results if isinstance(r, Exception) or r is None or r is False]
    if len(results) != n or bad:
        raise BackendUnavailable(
            f"The {name} backend did not complete every lane of {key} "
            f"({len(bad)} of {n} failed, first: {bad[0] if bad else 'none'}); "
            "its rate would be meaningless."
        )


# -- progress ----------------------------------------------------------------


class Progress:
    """A one-line bar redrawn in place: ``[#####-----] 12/48 label``.

    With no ``stream`` it counts and shows nothing.
    """

    def __init__(self, total: int, stream: TextIO | None, width: int = 20) -> None:
        self._total = max(1, total)
        self._stream = stream
        self._width = width
        self._done = 0
        self._shown = 0

    def start(self, label: str) -> None:
        """Show that step number done + 1 (``label``) is under way."""
        self._draw(f"{self._done + 1}/{self._total} {label}")

    def advance(self) -> None:
        self._done += 1

    def finish(self) -> None:
        self._draw(f"{self._done}/{self._total} done")
        if self._stream:
            self._stream.write("\n")
            self._stream.flush()

    def _draw(self, text: str) -> None:
        if not self._stream:
            return
        filled = self._width * self._done // self._total
        bar = "#" * filled + "-" * (self._width - filled)
        line = f"[{bar}] {text}"
        # Pad over the tail of a longer previous line.
        self._stream.write("\r" + line.ljust(self._shown))
        self._stream.flush()
        self._shown = len(line)


# -- running -------------------------------------------------------------------


def open_backends(
    names: Sequence[str], config: EngineConfig | None = None
) -> tuple[dict[str, object], dict[str, str]]:
    """Build each named backend; return (opened, {skipped name: why})."""
    config = config or EngineConfig.from_env()
    opened: dict[str, object] = {}
    skipped: dict[str, str] = {}
    for name in names:
        try:
            # OpenSSL's default is its best in-process setting: a pool of one
            # thread per core. The device takes PQC_DEVICE_* from ``config``.
            opened[name] = backend_by_name(name, config)
        except BackendUnavailable as exc:
            skipped[name] = str(exc)
    return opened, skipped


def prepare_lanes(plan: BenchPlan, backends: dict[str, object]) -> dict:
    """Lanes for the largest batch, per (backend, key); smaller ones slice them.

    Each signing parameter set gets its own key slot, since all their lanes
    are kept at once.
    """
    largest = max(plan.batches)
    slots = {param: 1 + i for i, param in enumerate(plan.params)}
    lanes: dict[tuple[str, OpKey], list[tuple]] = {}
    for name, backend in backends.items():
        for key in plan.op_keys():
            if backend.serves(key):
                lanes[name, key] = make_lanes(
                    backend, key, largest, slot=slots[key.param]
                )
    return lanes


def run_plan(
    plan: BenchPlan,
    backends: dict[str, object],
    lanes: dict,
    progress: Progress | None = None,
) -> list[Point]:
    """Time every point, backends taking turns, round after round."""
    progress = progress or Progress(0, None)
    points = [Point(key, b) for key in plan.op_keys() for b in plan.batches]
    for round_no in range(plan.rounds):
        for point in points:
            for name, backend in backends.items():
                if (name, point.key) not in lanes:
                    continue
                progress.start(
                    f"{point.key.kind} {point.key.param} {name} b{point.batch}"
                )
                work = lanes[name, point.key][: point.batch]
                _measure(name, backend, point, work, plan.seconds, round_no == 0)
                progress.advance()
    return points


def _measure(name, backend, point: Point, work, seconds: float, first: bool) -> None:
    if first:
        # One untimed call warms pools and caches and proves the lanes work.
        check_results(name, point.key, backend.run_batch(point.key, work), len(work))
    calls = time_batches(backend, point.key, work, seconds)
    series = point.series.setdefault(name, Series())
    series.rates.append(point.batch * len(calls) / sum(calls))
    series.calls.extend(calls)


def count_steps(plan: BenchPlan, lanes: dict) -> int:
    """How many timed points the run has: the progress bar's total."""
    return plan.rounds * len(lanes) * len(plan.batches)


# -- the report ----------------------------------------------------------------


@dataclass
class BenchReport:
    plan: BenchPlan
    points: list[Point]
    machine: dict[str, object]
    paths: dict[str, str]  # backend name -> "cpu" or "device"
    skipped: dict[str, str] = field(default_factory=dict)
    command: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "command": self.command,
            "machine": self.machine,
            "settings": {
                "ops": [kind.value for kind in self.plan.kinds],
                "params": list(self.plan.params),
                "backends": list(self.paths),
                "batches": list(self.plan.batches),
                "seconds_per_point": self.plan.seconds,
                "rounds": self.plan.rounds,
            },
            "skipped_backends": self.skipped,
            "points": [self._point_dict(p) for p in self.points],
        }

    def _point_dict(self, point: Point) -> dict[str, object]:
        return {
            "op": point.key.kind.value,
            "param": point.key.param,
            "batch": point.batch,
            "results": {n: s.summary() for n, s in point.series.items()},
            "not_served": [n for n in self.paths if n not in point.series],
            "ratios": point.ratios(self.paths),
        }

    def render(self) -> str:
        names = list(self.paths)
        ratio_names = list(
            dict.fromkeys(r for p in self.points for r in p.ratios(self.paths))
        )
        headers = ["op", "param", "batch"]
        headers += [f"{n} ops/s" for n in names]
        headers += [f"{n} ms p50/p95" for n in names]
        headers += ratio_names
        rows = [self._row(p, names, ratio_names) for p in self.points]
        lines = [_table(headers, rows), "", *self._notes()]
        return "\n".join(lines)

    def _row(self, point: Point, names, ratio_names) -> list[str]:
        done = {n: s.summary() for n, s in point.series.items()}
        ratios = point.ratios(self.paths)
        row = [point.key.kind.value, point.key.param, str(point.batch)]
        row += [f"{done[n]['ops_per_s']:,.0f}" if n in done else "-" for n in names]
        for n in names:
            lat = done[n]["latency_ms"] if n in done else None
            row.append(f"{_ms(lat['p50'])}/{_ms(lat['p95'])}" if lat else "-")
        row += [f"{ratios[r]:.2f}" if r in ratios else "-" for r in ratio_names]
        return row

    def _notes(self) -> list[str]:
        m = self.machine
        notes = [
            f"cpu: {m['cpu_model']}, {m['cores']} cores; "
            f"flags: {' '.join(f for f in CPU_FLAGS if m['cpu_flags'][f]) or 'none'}",
            f"ops/s: median of {self.plan.rounds} round(s) of "
            f"{self.plan.seconds:g} s per point; ms: one run_batch call",
        ]
        for name, info in m["backends"].items():
            shown = ", ".join(f"{k} {v}" for k, v in info.items() if k != "name")
            notes.append(f"{name}: {shown}")
        for name, why in self.skipped.items():
            notes.append(f"{name}: skipped, {why}")
        return notes


def _ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """Text columns left-aligned, number columns right-aligned."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    text_columns = 2  # op, param

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < text_columns else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def machine_info(backends: dict[str, object]) -> dict[str, object]:
    """The facts a reader needs to compare this run with another."""
    import cryptography
    import numpy
    from cryptography.hazmat.backends.openssl import backend as ossl

    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    described = {name: b.describe() for name, b in backends.items()}
    return {
        "cpu_model": cpu.get("model name", platform.processor() or "unknown"),
        "cpu_flags": {flag: flag in flags for flag in CPU_FLAGS},
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "openssl": ossl.openssl_version_text(),
        "cryptography": cryptography.__version__,
        "numpy": numpy.__version__,
        "device": described.get("device"),
        "backends": described,
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's fields; empty where the file does not exist."""
    fields: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    break
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
    except OSError:
        pass
    return fields


# -- the plot ------------------------------------------------------------------


def load_matplotlib():
    """The Agg canvas and Figure classes, or a sentence saying what is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PqcError(
            "--plot needs matplotlib, which is not installed: install it (in a "
            "clone: pip install -e '.[bench]'; else pip install matplotlib) or "
            "leave out --plot."
        ) from None
    return FigureCanvasAgg, Figure


def write_plot(report: BenchReport, path: str) -> None:
    """Ops/s against batch size: one subplot per (op, param), a line per backend."""
    canvas_cls, figure_cls = load_matplotlib()
    keys = report.plan.op_keys()
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    figure = figure_cls(figsize=(4.5 * cols, 3.4 * rows), layout="constrained")
    canvas_cls(figure)
    for i, key in enumerate(keys):
        axes = figure.add_subplot(rows, cols, i + 1)
        _plot_key(axes, report, key)
    figure.suptitle(f"pqc-engine bench: {report.machine['cpu_model']}")
    try:
        figure.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise PqcError(f"Could not write {path}: {exc.strerror}.") from None


def _plot_key(axes, report: BenchReport, key: OpKey) -> None:
    points = [p for p in report.points if p.key == key]
    for name in report.paths:
        served = [p for p in points if name in p.series]
        if served:
            rates = [statistics.median(p.series[name].rates) for p in served]
            axes.plot([p.batch for p in served], rates, marker="o", label=name)
    axes.set_xscale("log", base=2)
    axes.set_xticks(report.plan.batches, labels=map(str, report.plan.batches))
    axes.minorticks_off()
    axes.set_ylim(bottom=0)  # rates compared by eye need a common zero
    axes.set_title(f"{key.kind.value} {key.param}", fontsize=10)
    axes.set_xlabel("batch size")
    axes.set_ylabel("ops/s")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)


# -- the command -----------------------------------------------------------------


def main(args) -> int:
    """Run ``pqc-engine bench`` from its parsed arguments."""
    plan = BenchPlan.from_text(
        args.ops, args.params, args.backends, args.batches, args.seconds, args.rounds
    )
    if args.plot:
        load_matplotlib()  # fail before the run, not after it
    backends, skipped = _open_or_fail(plan)
    try:
        report = _run(plan, backends, skipped, args)
    finally:
        for backend in backends.values():
            backend.close()

    print(report.render())
    if args.json:
        _write(args.json, json.dumps(report.to_dict(), indent=2) + "\n")
    if args.plot:
        write_plot(report, args.plot)
    return 0


def _open_or_fail(plan: BenchPlan) -> tuple[dict[str, object], dict[str, str]]:
    backends, skipped = open_backends(plan.backends)
    for name, why in skipped.items():
        print(f"pqc-engine: skipping the {name} backend: {why}", file=sys.stderr)
    if not backends:
        raise BackendUnavailable(
            f"No backend to measure: {', '.join(skipped)} could not be opened."
        )
    return backends, skipped


def _run(plan, backends, skipped, args) -> BenchReport:
    lanes = prepare_lanes(plan, backends)
    shown = args.progress or sys.stderr.isatty()
    progress = Progress(count_steps(plan, lanes), sys.stderr if shown else None)
    points = run_plan(plan, backends, lanes, progress)
    progress.finish()
    return BenchReport(
        plan=plan,
        points=points,
        machine=machine_info(backends),
        paths={name: b.path for name, b in backends.items()},
        skipped=skipped,
        command=plan.command_line(args.json, args.plot),
    )


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise PqcError(f"Could not write {path}: {exc.strerror}.") from None
