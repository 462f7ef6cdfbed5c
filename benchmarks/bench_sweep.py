"""Benchmark of the sweep engine's backends (``mdm_exact.sweep.run_sweep``, docs/sweeps.md).

One fixed grid, presets 2-gram and 3-gram x L = 128 x the linear schedule with N = 8, 16, 32,
64 steps x 300 samples (8 cells, the oracle denoiser), run once by each backend into a fresh
temporary ``out`` directory:

(a) ``local`` with 1 worker (the cells run in this process);
(b) ``local`` with 2 workers (a pool of spawned processes, 1 numba thread each);
(c) ``dask``: a ``LocalCluster`` of 2 worker processes x 1 thread started here (its start-up
    timed separately; workers spawned with ``NUMBA_NUM_THREADS=1``, as docs/sweeps.md advises
    for one's own workers), ``run_sweep`` connecting to its scheduler address;
(d) resume: (a) rerun on its finished directory, every cell reused (best of a few repeats).

The three tables must be identical except ``wall_time_s``; the script fails loudly otherwise.
Reported per backend: wall time, speed-up over (a), the sum of the cells' own wall times, the
CPU time of this process and of the worker processes, and the load. A warm-up sweep of one tiny
cell first loads the numba cache in this process; the worker processes load it themselves,
inside the timed runs, as a real sweep does.

Usage::

    python benchmarks/bench_sweep.py            # full run, 2-4 min; results + docs section
    python benchmarks/bench_sweep.py --quick    # seconds; results/sweep.quick.json only

The full run appends a row to ``benchmarks/results/sweep.json`` and rewrites the "Sweep
backends" section of ``docs/benchmarks.md`` in place (other sections are left alone).
"""

from __future__ import annotations

import logging
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import pandas
import psutil
from _common import Meter, loadavg, parse_args, report_header, save, timed

from mdm_exact.sweep import Grid, load_results, run_sweep

PRESETS = ("2-gram", "3-gram")
STEPS = (8, 16, 32, 64)
WORKERS = 2
BACKENDS = ("local, 1 worker", f"local, {WORKERS} workers",
            f"dask LocalCluster, {WORKERS} x 1 thread")


class TableMismatch(RuntimeError):
    """Two backends' tables differ outside the wall-time column."""


def _children_cpu_s() -> float:
    """CPU time (user + system) of this process's reaped children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _reap_children(timeout_s: float = 30.0) -> None:
    """Wait (untimed) until the pool's worker processes have exited and been reaped, so that
    their CPU time shows in ``RUSAGE_CHILDREN``."""
    end = time.monotonic() + timeout_s
    while multiprocessing.active_children() and time.monotonic() < end:
        time.sleep(0.05)


def _tree_cpu_s(processes: list[psutil.Process]) -> float:
    """CPU time (user + system, their reaped children included) of live processes."""
    total = 0.0
    for proc in processes:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _measure(label: str, run, workers_cpu) -> tuple[pandas.DataFrame, dict]:
    """Run ``run()`` (a sweep) under a ``Meter``. ``workers_cpu()``, called just before, returns
    a callable that gives the CPU time the worker processes have spent since."""
    since = workers_cpu()
    with Meter() as meter:
        table = run()
    worker_s = since()
    result = {"backend": label, **meter.as_dict(), "workers_cpu_s": worker_s,
              "others_cpus": _others_cpus({**meter.as_dict(), "workers_cpu_s": worker_s}),
              "cells_wall_sum_s": float(table["wall_time_s"].sum()),
              "cells_wall_max_s": float(table["wall_time_s"].max()),
              "computed": int(table.attrs["computed"]), "reused": int(table.attrs["reused"])}
    print(f"  {label}: {meter.wall_s:.2f} s wall, cells' own wall {result['cells_wall_sum_s']:.2f}"
          f" s, CPU here {meter.cpu_s:.2f} s + workers {worker_s:.2f} s, load "
          f"{meter.loadavg_before} -> {meter.loadavg_after}", flush=True)
    return table, result


def _others_cpus(run: dict) -> float | None:
    """CPUs that processes other than this one and its workers used on average over a run: the
    ``Meter``'s other load (which counts the workers) less the workers' CPU time."""
    if run.get("other_load_cpus") is None:
        return None
    return max(0.0, run["other_load_cpus"] - run["workers_cpu_s"] / max(run["wall_s"], 1e-9))


def _no_workers():
    return lambda: 0.0


def _pool_workers():
    before = _children_cpu_s()

    def since() -> float:
        _reap_children()
        return _children_cpu_s() - before
    return since


def _cluster_workers(processes: list[psutil.Process]):
    def start():
        before = _tree_cpu_s(processes)
        return lambda: _tree_cpu_s(processes) - before
    return start


def check_identical(tables: dict[str, pandas.DataFrame]) -> None:
    """Raise ``TableMismatch`` unless every table equals the first one, ``wall_time_s`` aside
    (values compared exactly, NaN equal to NaN, dtypes and row order included)."""
    (ref_label, ref), *others = tables.items()
    ref = ref.drop(columns="wall_time_s")
    for label, table in others:
        try:
            pandas.testing.assert_frame_equal(ref, table.drop(columns="wall_time_s"),
                                              check_exact=True)
        except AssertionError as err:
            raise TableMismatch(f"the tables of {ref_label!r} and {label!r} differ outside "
                                f"wall_time_s:\n{err}") from None


def bench(grid: Grid, samples: int, resume_repeats: int, budget_s: float) -> dict:
    with Meter() as warm:  # numba cache load in this process
        run_sweep(Grid(language=PRESETS, length=(16,), steps=(4,)), samples=4, workers=1)
    print(f"  warm-up (this process): {warm.wall_s:.2f} s", flush=True)
    runs, tables = [], {}
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        dirs = {label: Path(tmp) / f"out{i}" for i, label in enumerate(BACKENDS)}
        local1, local2, dask = BACKENDS
        tables[local1], row = _measure(local1, lambda: run_sweep(
            grid, samples, out=dirs[local1], workers=1), _no_workers)
        runs.append(row)
        tables[local2], row = _measure(local2, lambda: run_sweep(
            grid, samples, out=dirs[local2], workers=WORKERS), _pool_workers)
        runs.append(row)
        cluster_row = bench_dask(grid, samples, dirs[dask], tables, runs)
        for label, directory in dirs.items():  # what the directories hold, too
            tables[f"{label} (results.csv)"] = load_results(directory)
        check_identical({k: v for k, v in tables.items() if "results.csv" not in k})
        check_identical({k: v for k, v in tables.items() if "results.csv" in k})
        print("  tables identical outside wall_time_s: yes", flush=True)

        def resume() -> None:
            table = run_sweep(grid, samples, out=dirs[local1], workers=1)
            if table.attrs["reused"] != len(table) or table.attrs["computed"]:
                raise TableMismatch(f"resume recomputed {table.attrs['computed']} cells")
            pandas.testing.assert_frame_equal(table, tables[local1], check_exact=True)
        with Meter() as resumed:
            res = timed({"resume": resume}, resume_repeats, budget_s)["resume"]
    print(f"  resume, all {len(tables[local1])} cells reused: best {res['best_s'] * 1e3:.1f} ms "
          f"(median {res['median_s'] * 1e3:.1f} ms)", flush=True)
    base = runs[0]["wall_s"]
    for row in runs:
        row["speedup_vs_local_1"] = base / row["wall_s"]
    return {"warmup_s": warm.wall_s, "runs": runs, "cluster": cluster_row,
            "resume": {**res, **resumed.as_dict(), "cells": len(tables[local1])},
            "tables_identical": True}


def bench_dask(grid: Grid, samples: int, out: Path, tables: dict, runs: list) -> dict:
    """(c): start a LocalCluster (timed), run the sweep on it, close it (timed)."""
    import dask
    from distributed import Client, LocalCluster

    label = BACKENDS[2]
    # Set before the spawn: Nanny(env=...) applies after the child has re-imported this
    # script, whose imports load numba, so numba would keep its default thread count.
    environ = {"distributed.nanny.pre-spawn-environ.NUMBA_NUM_THREADS": "1"}
    with Meter() as start, dask.config.set(environ):
        cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        with Client(cluster) as client:
            client.wait_for_workers(WORKERS)
    print(f"  LocalCluster start-up: {start.wall_s:.2f} s", flush=True)
    try:
        with Client(cluster) as client:
            threads = client.run(_numba_threads)
        processes = psutil.Process().children(recursive=True)
        tables[label], row = _measure(label, lambda: run_sweep(
            grid, samples, out=out, backend="dask", scheduler=cluster.scheduler_address),
            _cluster_workers(processes))
        runs.append(row)
    finally:
        with Meter() as stop:
            cluster.close()
    row["cluster_startup_s"] = start.wall_s
    row["wall_with_startup_s"] = start.wall_s + row["wall_s"]
    return {"startup_s": start.wall_s, "startup_cpu_s": start.cpu_s, "shutdown_s": stop.wall_s,
            "worker_numba_threads": sorted(threads.values())}


def _numba_threads() -> int:
    """numba's thread count in the process this runs in (a Dask worker)."""
    import numba

    return numba.get_num_threads()


def _fmt(value, spec: str = ".2f", unit: str = " s") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def docs_section(report: dict) -> str:
    m, c, r = report["machine"], report["config"], report["results"]
    rows = "\n".join(
        f"| {row['backend']} | {_fmt(row['wall_s'])} | {row['speedup_vs_local_1']:.2f}x | "
        f"{_fmt(row['cells_wall_sum_s'])} | {_fmt(row['cells_wall_max_s'])} | "
        f"{_fmt(row['process_cpu_s'])} | {_fmt(row['workers_cpu_s'])} | "
        f"{_fmt(_others_cpus(row), '.2f', '')} | "
        f"{row['loadavg_before'][0] if row['loadavg_before'] else 'n/a'} -> "
        f"{row['loadavg_after'][0] if row['loadavg_after'] else 'n/a'} |"
        for row in r["runs"])
    cl, res = r["cluster"], r["resume"]
    return f"""## Sweep backends

`python benchmarks/bench_sweep.py` (raw numbers: `benchmarks/results/sweep.json`).
One grid through `mdm_exact.sweep.run_sweep` ({{doc}}`sweeps`): presets
{', '.join(c['presets'])} x L = {c['length']} x the linear schedule with N =
{', '.join(map(str, c['steps']))} x {c['samples']} samples, oracle denoiser
({c['cells']} cells; the 2-gram cells also compute the exact-likelihood KL), each backend once
into a fresh `--out` directory. The tables of the three backends were checked identical except
`wall_time_s` (and so were their `results.csv`). Speed-up: the 1-worker wall time over the
backend's. "Cells' own" are the `wall_time_s` columns: their sum is the work (in a fresh worker
process the first cell also loads the numba cache), their maximum the floor any number of
workers meets. CPU: of this process, and of the worker processes (the pool or the cluster's);
others: the CPUs other processes of the machine used on average meanwhile; load: 1-minute load
average before -> after. With 1 worker the cells run here with numba's default threads (all
cores); each of {c['workers']} workers gets cores / {c['workers']}: more workers pay only where
the cells spread better than their kernels scale over threads, and never go below the largest
cell's time on its share of the cores.

Machine: {m['cpu_model']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs,
{m['platform']}; Python {m['python']}, numpy {m['numpy']}, numba {m['numba']}, dask distributed
{m.get('distributed')}, pandas {m.get('pandas')}.
Run {report['timestamp']}; load average {report.get('loadavg_start')} at the start,
{report.get('loadavg_end')} at the end.

| Backend | Wall | Speed-up | Cells' own, sum | Cells' own, max | CPU here | CPU workers \
| Others (CPUs) | Load |
|---|---:|---:|---:|---:|---:|---:|---:|---|
{rows}

- Dask `LocalCluster` ({c['workers']} processes x 1 thread, workers' numba threads
  {cl['worker_numba_threads']}): start-up {cl['startup_s']:.2f} s (not in the row above; with it
  the dask sweep takes {r['runs'][2]['wall_with_startup_s']:.2f} s), shutdown
  {cl['shutdown_s']:.2f} s. Started by `run_sweep(backend="dask")` itself, the cluster's
  start-up is part of the sweep.
- Resume: the 1-worker sweep rerun on its finished directory, all {res['cells']} cells reused
  (read back from `cells/*.json`, `results.csv` rewritten): best {res['best_s'] * 1e3:.1f} ms,
  median {res['median_s'] * 1e3:.1f} ms of {len(res['times_s'])} runs.
- Warm-up (numba cache load in this process, before (a)): {r['warmup_s']:.2f} s; the pool's and
  the cluster's processes load it inside their timed runs.
"""


def headline(row: dict) -> dict[str, float]:
    runs = row["results"]["runs"]
    return {**{run["backend"]: run["wall_s"] for run in runs},
            "resume (best)": row["results"]["resume"]["best_s"]}


def main(argv=None) -> int:
    args = parse_args(
        argv, __doc__, "small sizes, about a minute (writes sweep.quick.json, no docs update)",
        {"--samples": (300, 20, "samples per cell (default 300, quick 20)"),
         "--length": (128, 32, "sequence length L (default 128, quick 32)"),
         "--repeats": (5, 2, "resume repeats (default 5, quick 2)")},
        "seconds after which the resume repeats stop (at least two are run)",
    )
    grid = Grid(language=PRESETS, length=(args.length,), plan=("linear",), steps=STEPS,
                seed=(args.seed,))
    config = {"presets": list(PRESETS), "length": args.length, "plan": "linear",
              "steps": list(STEPS), "samples": args.samples, "cells": len(grid.cells()),
              "workers": WORKERS, "repeats": args.repeats, "budget_s": args.budget,
              "seed": args.seed, "quick": args.quick}
    start_load = loadavg()
    print(f"bench_sweep: {config['cells']} cells, L={args.length}, {args.samples} samples, "
          f"loadavg={start_load}", flush=True)
    results = bench(grid, args.samples, args.repeats, args.budget)
    report = {**report_header("sweep", argv, config, "distributed", "pandas"),
              "loadavg_start": start_load, "loadavg_end": loadavg(), "results": results}
    wrote = save(report, args, docs_section, headline)
    print()
    for run in results["runs"]:
        print(f"{run['backend']}: {run['wall_s']:.2f} s, speed-up {run['speedup_vs_local_1']:.2f}x")
    print(f"LocalCluster start-up: {results['cluster']['startup_s']:.2f} s; resume: "
          f"{results['resume']['best_s'] * 1e3:.1f} ms")
    print(wrote)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
