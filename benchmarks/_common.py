"""Infrastructure shared by the benchmark scripts ``benchmarks/bench_*.py`` (private).

The scripts run as ``python benchmarks/bench_<name>.py``, which puts this folder on
``sys.path``, so they import this module as ``_common``. It holds the paths, the machine
description, the load meter, the interleaved timer, the masked inputs, the command-line options
every script has, and the writing of ``benchmarks/results/<name>[.quick].json`` and of the
script's own marker-delimited section of ``docs/benchmarks.md``.

``benchmarks/results/<name>.json`` is an append-only history, ``{"benchmark": name, "rows":
[...]}``, one row per full run (the run's whole report: date, machine and versions, load,
configuration, results), so progress is a table and not a claim. A row made with
``--release NAME`` measures that release; every run prints the ratio of its headline times to
those of the last release row measured on the same machine (CPU model and CPU counts) with the
same sizes, and the script's docs section is regenerated from the history: the latest row in
full, then a table of every row. ``--quick`` runs keep only their latest row, in
``<name>.quick.json``, and touch no docs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
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
machines are not comparable). Raw results are stored as JSON under `benchmarks/results/`, one
row per run in an append-only history (machine, versions, date, load, results); each section is
regenerated from that history, ends with a table of its rows, and each run prints its ratio to
the last release row measured on the same machine.
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
    parser.add_argument("--release", metavar="NAME",
                        help="mark this row as the measurement of release NAME (later runs print "
                             "their ratio to it)")
    args = parser.parse_args(argv)
    for flag, (full, quick, _) in sizes.items():
        dest = flag.lstrip("-").replace("-", "_")
        setattr(args, dest, getattr(args, dest) or (quick if args.quick else full))
    if args.threads:
        numba.set_num_threads(args.threads)
    return args


# ---------------------------------------------------------------------------------- results


def source_revision() -> str:
    """``git describe --always --dirty`` of the checkout, or "unknown" outside one."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def report_header(benchmark: str, argv, config: dict, *packages: str) -> dict:
    """The first entries of every results row; ``packages`` go to :func:`machine_info`.
    ``release`` is filled in by :func:`save` from ``--release``."""
    return {
        "benchmark": benchmark,
        "timestamp": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "config": config,
        "machine": machine_info(*packages),
        "revision": source_revision(),
        "release": None,
        "loadavg_at_save": loadavg(),
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


SIZE_FREE_CONFIG = ("budget_s", "repeats", "sample_repeats", "seed", "quick", "tolerance")
"""Configuration entries that do not change what is measured (rows differing only in them are
comparable)."""

Headline = Callable[[dict], dict[str, float]]
"""A script's headline times of a row: {label: seconds}, lower is better."""


def machine_key(row: dict) -> tuple:
    """What makes two rows' timings comparable: CPU model and logical / usable CPU counts."""
    m = row.get("machine", {})
    return m.get("cpu_model"), m.get("logical_cpus"), m.get("usable_cpus")


def _sizes(row: dict) -> dict:
    return {k: v for k, v in row.get("config", {}).items() if k not in SIZE_FREE_CONFIG}


def load_history(path: Path) -> list[dict]:
    """The rows of a results file: ``{"rows": [...]}``, or one bare report (the format before
    the history) as a one-row history; [] when the file is absent."""
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return data["rows"] if "rows" in data else [data]


def release_row(rows: list[dict], row: dict) -> dict | None:
    """The last release row before ``row`` measured on the same machine with the same sizes."""
    for old in reversed(rows):
        if old is not row and old.get("release") and machine_key(old) == machine_key(row) \
                and _sizes(old) == _sizes(row):
            return old
    return None


def _headline(headline: Headline | None, row: dict) -> dict[str, float]:
    """The row's headline times; {} where an old row lacks the fields the script reads."""
    if headline is None:
        return {}
    try:
        return headline(row)
    except (KeyError, TypeError, IndexError):
        return {}


def compare_to_release(rows: list[dict], row: dict, headline: Headline | None) -> list[str]:
    """Lines "label: new s vs release s: ratio x" (release time / new time: > 1 is faster)."""
    base = release_row(rows, row)
    if base is None or headline is None:
        return ["no release row measured on this machine with these sizes to compare with"]
    old, new = _headline(headline, base), _headline(headline, row)
    lines = [f"vs release {base['release']} ({base['timestamp']}):"]
    for label, t in new.items():
        if label in old and t > 0:
            lines.append(f"  {label}: {t:.4g} s vs {old[label]:.4g} s: {old[label] / t:.2f}x")
    return lines


def _load_text(row: dict) -> str:
    load = row.get("loadavg_start") or row.get("loadavg_at_save")
    return "n/a" if load is None else f"{load[0]:.2f}"


def history_table(rows: list[dict], headline: Headline | None) -> str:
    """Markdown table of every row: date, release, revision, machine, versions, 1-minute load
    average at the start, and the headline times."""
    labels: list[str] = []
    for row in rows:
        for label in _headline(headline, row):
            if label not in labels:
                labels.append(label)
    head = ["Run (UTC)", "Release", "Revision", "Machine", "numpy / numba", "Load (1 min)",
            *labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 5 + "---:|" * (1 + len(labels))]
    for row in rows:
        m = row.get("machine", {})
        times = _headline(headline, row)
        cells = [row.get("timestamp", "?"), row.get("release") or "", row.get("revision", ""),
                 f"{m.get('cpu_model')}, {m.get('usable_cpus')} CPUs",
                 f"{m.get('numpy')} / {m.get('numba')}", _load_text(row),
                 *(f"{times[label]:.3g} s" if label in times else "n/a" for label in labels)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save(report: dict, args, docs_body: Callable[[dict], str],
         headline: Headline | None = None) -> str:
    """Append ``report`` as a row to ``--output`` or ``benchmarks/results/<benchmark>.json``
    (``--quick``: replace ``<benchmark>.quick.json`` with it), print its ratio to the last release
    row on the same machine (``headline``: the row's headline times), and, unless ``--quick`` or
    ``--no-docs``, regenerate the section of ``docs/benchmarks.md`` that
    ``benchmarks/bench_<benchmark>.py`` owns: ``docs_body(report)`` and the history table.
    Returns the "wrote" line to print."""
    name = report["benchmark"]
    report["release"] = getattr(args, "release", None)
    out = args.output or RESULTS / (f"{name}.quick.json" if args.quick else f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [] if args.quick else load_history(out)
    rows.append(report)
    out.write_text(json.dumps({"benchmark": name, "rows": rows}, indent=2) + "\n")
    print("\n".join(compare_to_release(rows, report, headline)))
    if args.quick or args.no_docs:
        return f"wrote {out}"
    body = docs_body(report).rstrip("\n")
    history = history_table(rows, headline)
    update_docs(f"bench_{name}", f"{body}\n\n**History** (every row of `{out.name}`; times in "
                f"seconds, lower is better):\n\n{history}\n")
    return f"wrote {out} and {DOCS}"
