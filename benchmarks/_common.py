"""Infrastructure shared by the benchmark scripts ``benchmarks/bench_*.py`` (private).

The scripts run as ``python benchmarks/bench_<name>.py``, which puts this folder on
``sys.path``, so they import this module as ``_common``. It holds the paths, the machine
description, the load meter, the interleaved timer, the masked inputs, the command-line options
every script has, and the writing of ``benchmarks/results/<name>[.quick].json`` and of the
script's own marker-delimited section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np

import mdm_exact

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
DOCS_INTRO = """# Benchmarks

Performance measurements of `mdm_exact`. Every section is written by the script it names, so a
rerun refreshes the numbers in place (run on an otherwise idle machine; numbers from different
machines are not comparable). Raw results are stored as JSON under `benchmarks/results/`.
On the 2-vCPU machine used here, idle runs of the same code vary by up to about 30% between runs
(the 4-gram ratio below was 30x in one idle run and 22x in the next, the HMM ratio 9.9x and
8.0x), mostly through how well the second thread scales; the CPU-time ratio column is the steadier
figure.
"""

# ------------------------------------------------------------------------------------ machine


def package_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(*packages: str) -> dict:
    """CPU, platform, numba threading and versions: Python, numpy, numba, mdm_exact and the
    installed distribution of each name in ``packages`` (a script's baselines)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = "not initialised"
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        **{name: package_version(name) for name in packages},
        "mdm_exact": getattr(mdm_exact, "__version__", "unknown"),
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer": layer,
    }


# --------------------------------------------------------------------------------- measuring


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (``None`` where the platform has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


class Meter:
    """Wall time, this process's CPU time (every thread), the load average before and after,
    and the CPU time other processes used over a block: ``/proc/stat`` busy time minus our own
    (Linux only, else ``None``). On a shared machine the last says how far to trust a timing."""

    @staticmethod
    def _busy_s() -> float | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
            ticks = [int(v) for v in fields]
            idle = ticks[3] + ticks[4]  # idle + iowait
            return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, AttributeError):
            return None

    def __enter__(self):
        self.loadavg_before = loadavg()
        self._busy0 = self._busy_s()
        self._cpu0 = time.process_time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall_s = time.perf_counter() - self._t0
        self.cpu_s = time.process_time() - self._cpu0
        busy = self._busy_s()
        self.other_cpus = (None if busy is None or self._busy0 is None else
                           max(0.0, (busy - self._busy0 - self.cpu_s) / max(self.wall_s, 1e-9)))
        self.loadavg_after = loadavg()
        return False

    def as_dict(self) -> dict:
        return {"wall_s": self.wall_s, "process_cpu_s": self.cpu_s,
                "other_load_cpus": self.other_cpus, "loadavg_before": self.loadavg_before,
                "loadavg_after": self.loadavg_after}


def timed(fns: dict, repeats: int, budget_s: float) -> dict:
    """Time each function of ``fns`` ``repeats`` times, interleaved round by round so that a
    change in background load hits every contender alike; stops after fewer rounds (at least
    two) once ``budget_s`` is spent. Returns {name: {best_s, median_s, times_s, process_cpu_s}}
    (process CPU time counts every thread, numba's spin-waits included)."""
    times: dict = {name: [] for name in fns}
    cpu: dict = {name: [] for name in fns}
    start = time.perf_counter()
    for i in range(repeats):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        if i >= 1 and time.perf_counter() - start > budget_s:
            break
    return {name: {"best_s": min(ts), "median_s": statistics.median(ts), "times_s": ts,
                   "process_cpu_s": cpu[name]} for name, ts in times.items()}


def masked_sample(lang, batch: int, length: int, seed: int) -> np.ndarray:
    """Rows sampled from ``lang`` with exactly ``length // 2`` positions of each row masked."""
    rng = np.random.default_rng(seed)
    x = lang.sample(batch, length, rng)
    mask = rng.permuted(np.tile(np.arange(length) < length // 2, (batch, 1)), axis=1)
    x[mask] = mdm_exact.MASK
    return x


# ------------------------------------------------------------------------------ command line


def parse_args(argv, doc: str, quick_help: str, sizes: dict, budget_help: str):
    """The scripts' command line: ``--quick``; the integer size options of ``sizes``
    ({flag: (full default, quick default, help)}), resolved to the full or quick default when
    not given; ``--budget`` (seconds, default 30); ``--threads`` (applied to numba here);
    ``--seed``; ``--output``; ``--no-docs``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    for flag, (_, _, help_text) in sizes.items():
        parser.add_argument(flag, type=int, help=help_text)
    parser.add_argument("--budget", type=float, default=30.0, help=budget_help)
    parser.add_argument("--threads", type=int, help="numba threads (default: numba's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="JSON path (default benchmarks/results/)")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args(argv)
    for flag, (full, quick, _) in sizes.items():
        dest = flag.lstrip("-").replace("-", "_")
        setattr(args, dest, getattr(args, dest) or (quick if args.quick else full))
    if args.threads:
        numba.set_num_threads(args.threads)
    return args


# ---------------------------------------------------------------------------------- results


def report_header(benchmark: str, argv, config: dict, *packages: str) -> dict:
    """The first entries of every results JSON; ``packages`` go to :func:`machine_info`."""
    return {
        "benchmark": benchmark,
        "timestamp": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "config": config,
        "machine": machine_info(*packages),
    }


def section_markers(script: str) -> tuple[str, str]:
    return (f"<!-- {script}:begin (generated by benchmarks/{script}.py) -->",
            f"<!-- {script}:end -->")


def update_docs(script: str, body: str, path: Path = DOCS) -> None:
    """Put ``body`` between ``script``'s markers in ``path``: in place of that section, or
    appended when absent (a new file starts with the intro); other sections stay as they are."""
    begin, end = section_markers(script)
    body = body.rstrip("\n")
    section = f"{begin}\n{body}\n{end}\n"
    if path.exists():
        text = path.read_text()
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            tail = rest.split(end, 1)[1]
            text = head + section.rstrip("\n") + tail
        else:
            text = text.rstrip("\n") + "\n\n" + section
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = DOCS_INTRO + "\n" + section
    path.write_text(text)


def save(report: dict, args, docs_body: Callable[[dict], str]) -> str:
    """Write ``report`` to ``--output`` or ``benchmarks/results/<benchmark>[.quick].json`` and,
    unless ``--quick`` or ``--no-docs``, replace the section of ``docs/benchmarks.md`` that
    ``benchmarks/bench_<benchmark>.py`` owns with ``docs_body(report)``. Returns the "wrote"
    line to print."""
    name = report["benchmark"]
    out = args.output or RESULTS / (f"{name}.quick.json" if args.quick else f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if args.quick or args.no_docs:
        return f"wrote {out}"
    update_docs(f"bench_{name}", docs_body(report))
    return f"wrote {out} and {DOCS}"
