"""Parameter sweeps: a grid of cells, each a Monte-Carlo run of the sampler, as one tidy table.

A ``Grid`` is the Cartesian product of named axes (``AXES``): ``language`` (a Table 1 preset,
``NAME:THRESHOLD`` for another pruning threshold, or a language file), ``length``, ``plan`` (a
schedule family combined with ``steps``, a policy SPEC or a plan file), ``steps``, ``denoiser``
(``oracle`` or ``perturbed:EPS``) and ``seed``. ``run_sweep`` runs every cell with ``samples``
draws and returns a ``pandas.DataFrame``, one row per cell (``COLUMNS``): the axis values, SER
(eq. 5), generative log-perplexity, the Jensen bound per token (Lemma B.2), the KL per token
where the likelihood is exact (``likelihood.kl_estimate_within``) and the NFE, each with its
``_low`` / ``_high`` interval, the method, the wall time and the library version
(docs/sweeps.md). ``DataFrame.to_xarray()`` turns it into an array over the axes.

Each cell's random numbers come from ``numpy.random.SeedSequence`` over a SHA-256 of the
cell's parameters, so a table does not depend on the order the cells run in, on the number of
workers or on the backend. With ``out=DIR`` every finished cell is written atomically to
``DIR/cells/<key>.json`` (the key also covers ``samples`` and the library version) and a rerun
computes only the missing cells. Backends: ``local`` (a process pool) and ``dask``
(``dask.distributed``: an existing scheduler or a ``LocalCluster``; the ``[distributed]``
extra).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import __version__
from ._io import directory_lock, output_dir, read_json_object, write_atomic
from ._utils import MEMORY_ENV, check_memory, json_ready, memory_budget, progress_bar
from .errors import ArgumentError, ArgumentTypeError
from .languages import PRESETS, Language, load_language, preset

if TYPE_CHECKING:
    import pandas

SWEEP_FORMAT = "mdm_exact.sweep/1"
"""The ``"format"`` key of a sweep directory's manifest (``sweep.json``) and of its cells."""

AXES = ("language", "length", "plan", "steps", "denoiser", "seed")
"""The axes of a grid, in the order of the table's first columns."""

FAMILIES = ("linear", "cosine", "loglinear", "polynomial", "fixed-count")
"""Plan values that take the ``steps`` axis: ``Schedule.named`` families and ``fixed-count``
(``FixedCountPlan.even(L, N)``)."""

ESTIMATES = ("ser", "gen_log_ppl", "jensen_bound_per_token", "kl_per_token", "nfe")
"""Estimated quantities; each has ``_low`` and ``_high`` columns beside it."""

COLUMNS = (*AXES, "samples",
           *itertools.chain.from_iterable((q, f"{q}_low", f"{q}_high") for q in ESTIMATES),
           "method", "kl_note", "confidence", "wall_time_s", "version", "cell")
"""The columns of a sweep table, in order. ``ser``: SER (eq. 5), Wilson interval;
``gen_log_ppl``: E_p[-log q(x)] / L (nats per token); ``jensen_bound_per_token``: Lemma B.2's
E_tau KL(q || p_tau) / L (plans only, else missing); ``kl_per_token``: KL(q || p) / L from the
exact per-sample likelihood (missing where it is not exact, ``kl_note`` says why); ``nfe``: mean
denoiser calls per row; ``method``: how the numbers were obtained; ``wall_time_s``: seconds the
cell took (the one column that differs between runs); ``cell``: the cell's key."""

TEXT_COLUMNS = ("language", "plan", "denoiser", "method", "kl_note", "version", "cell")
"""Columns of pandas' ``string`` dtype (missing: ``pandas.NA``); ``length``, ``seed`` and
``samples`` are int64, ``steps`` nullable ``Int64``, the rest float64 (missing: NaN)."""

KL_SECONDS = 60.0
"""A cell computes the KL only where ``likelihood_seconds`` expects at most this long."""

CONNECT_TIMEOUT = 10.0
"""Seconds ``run_sweep`` waits for a Dask scheduler before refusing its address."""


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------ axis values


def _threshold(value: str, text: str) -> float:
    try:
        threshold = float(text)
    except ValueError:
        threshold = math.nan
    if not (math.isfinite(threshold) and 0 <= threshold < 1):
        raise ArgumentError(f"language {value!r}: the threshold after ':' must be a number in "
                            f"[0, 1), got {text!r}")
    return threshold


def split_language(value: str) -> tuple[str, float | None]:
    """(preset name or file, threshold) of a language axis value: ``"2-gram"`` -> ("2-gram",
    None), i.e. the preset's own threshold; ``"2-gram:0"`` -> ("2-gram", 0.0), the unpruned
    variant; a file path -> (path, None)."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"language must be a preset name or a file path, got {value!r}")
    name, sep, rest = value.partition(":")
    if sep and name in PRESETS:
        return name, _threshold(value, rest)
    return value, None


def sweep_language(value: str) -> Language:
    """The language of a ``language`` axis value: a Table 1 preset (seed 0), ``NAME:THRESHOLD``
    or a ``.json`` / ``.npz`` language file."""
    name, threshold = split_language(value)
    if name in PRESETS:
        return preset(name, threshold=threshold)
    if Path(name).suffix in (".json", ".npz"):
        return load_language(name)
    raise ArgumentError(f"language {value!r} is neither a preset ({', '.join(PRESETS)}, "
                        "optionally NAME:THRESHOLD) nor a .json / .npz language file")


def _policy_rules() -> tuple[str, ...]:
    from .policies import SPECS

    return tuple(spec.partition(":")[0] for spec in SPECS)


def plan_kind(value: str) -> str:
    """``"family"`` (takes the ``steps`` axis), ``"policy"`` or ``"file"``: what a ``plan``
    axis value names; refused when it names none of them."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"plan must be a string, got {value!r}")
    rule = value.partition(":")[0]
    if rule in FAMILIES:
        return "family"
    if rule in _policy_rules():
        return "policy"
    if value.endswith(".json"):
        return "file"
    raise ArgumentError(f"plan {value!r} is neither a schedule family ({', '.join(FAMILIES)}), "
                        f"a policy SPEC ({', '.join(_policy_rules())}) nor a .json plan file")


def plan_takes_steps(value: str) -> bool:
    """Whether a ``plan`` axis value is a family that takes the ``steps`` axis."""
    return plan_kind(value) == "family"


def sweep_plan(value: str, steps: int | None, length: int):
    """The plan or policy of a ``plan`` axis value at ``steps`` and ``length``: a family of
    ``FAMILIES`` (``loglinear:EPS``, ``polynomial:A`` as in ``Schedule.named``) with ``steps``,
    a policy SPEC (``policies.parse_policy``) or a plan file (``plan_files.load_plan``)."""
    from .schedules import FixedCountPlan, Schedule

    kind = plan_kind(value)
    if kind == "family":
        if steps is None:
            raise ArgumentError(f"plan {value!r} needs the steps axis (e.g. steps=(8, 16))")
        if value == "fixed-count":
            plan = FixedCountPlan.even(length, steps)
        else:
            plan = Schedule.named(value, steps)
    elif kind == "policy":
        from .policies import parse_policy

        plan = parse_policy(value)
    else:
        from .plan_files import load_plan

        plan = load_plan(value)
    plan.check_length(length)
    return plan


def sweep_eps_learning(value: str) -> float | None:
    """eps_learning of a ``denoiser`` axis value: ``oracle`` -> None, ``perturbed:EPS`` -> EPS
    (a ``PerturbedOracle`` with that KL per masked position, in nats)."""
    if value == "oracle":
        return None
    kind, _, text = value.partition(":") if isinstance(value, str) else ("", "", "")
    try:
        eps = float(text)
    except ValueError:
        eps = math.nan
    if kind != "perturbed" or not (math.isfinite(eps) and eps >= 0):
        raise ArgumentError(f"denoiser must be 'oracle' or 'perturbed:EPS' with a finite EPS >= 0"
                            f", got {value!r}")
    return eps


# ------------------------------------------------------------------------------ grid


@dataclass(frozen=True)
class Cell:
    """One point of a grid: a value of every axis (``steps`` is None for a plan that does not
    take it)."""

    language: str
    length: int
    plan: str
    steps: int | None
    denoiser: str
    seed: int

    def as_dict(self) -> dict:
        """The axis values by name."""
        return {axis: getattr(self, axis) for axis in AXES}


def _values(axis: str, values, kind: type, minimum: int | None = None) -> tuple:
    if isinstance(values, str | int) and not isinstance(values, bool):
        values = (values,)
    try:
        out = tuple(values)
    except TypeError:
        raise ArgumentTypeError(f"grid axis {axis!r} must be a sequence, got {values!r}") from None
    for v in out:
        if kind is int and (isinstance(v, bool) or not isinstance(v, int | np.integer)):
            raise ArgumentTypeError(f"grid axis {axis!r} must hold integers, got {v!r}")
        if kind is str and not isinstance(v, str):
            raise ArgumentTypeError(f"grid axis {axis!r} must hold strings, got {v!r}")
        if minimum is not None and v < minimum:
            raise ArgumentError(f"grid axis {axis!r} must hold integers >= {minimum}, got {v}")
    return tuple(int(v) for v in out) if kind is int else out


@dataclass(frozen=True)
class Grid:
    """The Cartesian product of the axes (each a sequence of values; see the module docstring).
    ``steps`` applies to the ``FAMILIES`` plans only; the others make one cell per combination
    of the remaining axes."""

    language: tuple[str, ...]
    length: tuple[int, ...]
    plan: tuple[str, ...] = ("linear",)
    steps: tuple[int, ...] = ()
    denoiser: tuple[str, ...] = ("oracle",)
    seed: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        for axis, kind, minimum in (("language", str, None), ("length", int, 1),
                                    ("plan", str, None), ("steps", int, 1),
                                    ("denoiser", str, None), ("seed", int, 0)):
            object.__setattr__(self, axis, _values(axis, getattr(self, axis), kind, minimum))

    def as_dict(self) -> dict:
        """The axes by name (lists), as the manifest stores them."""
        return {axis: list(getattr(self, axis)) for axis in AXES}

    def cells(self) -> list[Cell]:
        """Every cell, in axis order (duplicates dropped); refused when there is none."""
        empty = [axis for axis in AXES if axis != "steps" and not getattr(self, axis)]
        if empty:
            raise ArgumentError(f"the grid is empty: axis {empty[0]!r} has no values")
        families = [plan for plan in self.plan if plan_takes_steps(plan)]
        if families and not self.steps:
            raise ArgumentError(f"plan {families[0]!r} needs the steps axis, which is empty")
        if self.steps and not families:
            raise ArgumentError(f"the steps axis applies to the plans {', '.join(FAMILIES)} "
                                f"only, and the grid has none (plans {list(self.plan)})")
        out: dict[Cell, None] = {}
        for lang, length, plan in itertools.product(self.language, self.length, self.plan):
            for steps in self.steps if plan_takes_steps(plan) else (None,):
                for denoiser, seed in itertools.product(self.denoiser, self.seed):
                    out[Cell(lang, length, plan, steps, denoiser, seed)] = None
        return list(out)


# ------------------------------------------------------------------------------ one cell


@dataclass(frozen=True)
class CellTask:
    """Everything a worker needs for one cell (picklable; built and checked by ``run_sweep``).

    ``entropy``: the cell's seed material (``SeedSequence(entropy)``); ``max_bytes``: the memory
    budget of the submitting process; ``numba_threads``: threads of the numba kernels in the
    worker (None leaves the worker's setting)."""

    key: str
    cell: Cell
    language: Language
    plan: object
    eps_learning: float | None
    entropy: int
    samples: int
    kl_samples: int
    kl_seconds: float
    confidence: float
    max_bytes: float
    numba_threads: int | None = field(default=None, compare=False)


def _canonical(data) -> str:
    return json.dumps(json_ready(data), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _digest(data) -> str:
    return hashlib.sha256(_canonical(data).encode()).hexdigest()


def _interval(prefix: str, est) -> dict:
    if est is None:
        return {prefix: None, f"{prefix}_low": None, f"{prefix}_high": None}
    return {prefix: est.value, f"{prefix}_low": est.low, f"{prefix}_high": est.high}


class _Budget:
    """The submitting process's memory budget in the worker's environment for one cell."""

    def __init__(self, max_bytes: float):
        self.value = repr(float(max_bytes))

    def __enter__(self):
        self.saved = os.environ.get(MEMORY_ENV)
        os.environ[MEMORY_ENV] = self.value

    def __exit__(self, *exc):
        if self.saved is None:
            os.environ.pop(MEMORY_ENV, None)
        else:
            os.environ[MEMORY_ENV] = self.saved


def run_cell(task: CellTask) -> dict:
    """The table row of one cell: ``samples`` draws of ``sampling.sample`` scored with
    ``metrics.sequence_error_rate`` and ``generative_log_perplexity``, the Jensen bound
    (``metrics.jensen_bound``, plans only) and ``likelihood.kl_estimate_within`` with
    ``kl_samples`` draws; the sampler, the Jensen bound and the KL use three independent streams
    spawned from the cell's ``SeedSequence``."""
    from .estimate import mean_interval
    from .likelihood import kl_estimate_within
    from .metrics import generative_log_perplexity, jensen_bound, sequence_error_rate
    from .policies import is_policy
    from .sampling import PerturbedOracle, sample

    start = time.perf_counter()
    if task.numba_threads is not None:
        import numba

        numba.set_num_threads(max(1, min(task.numba_threads, numba.config.NUMBA_NUM_THREADS)))
    lang, plan, length, conf = task.language, task.plan, task.cell.length, task.confidence
    with _Budget(task.max_bytes):
        den = None if task.eps_learning is None else PerturbedOracle(lang, task.eps_learning)
        streams = np.random.SeedSequence(task.entropy).spawn(3)
        rng_sample, rng_jensen, rng_kl = (np.random.default_rng(s) for s in streams)
        res = sample(lang, plan, length, task.samples, den, rng_sample)
        ser = sequence_error_rate(lang, res.tokens, conf)
        gen = generative_log_perplexity(lang, res.tokens, conf)
        jb = None if is_policy(plan) else jensen_bound(
            lang, plan, length, task.samples, den, rng_jensen, conf).scaled(1 / length)
        kl, note = kl_estimate_within(lang, plan, length, task.kl_samples, den, rng_kl, conf,
                                      max_seconds=task.kl_seconds)
        nfe = mean_interval(res.nfe_per_row, conf, domain=(0.0, math.inf))
    method = "monte-carlo" if kl is None else "monte-carlo, KL from the exact likelihood"
    return {**task.cell.as_dict(), "samples": task.samples, **_interval("ser", ser),
            **_interval("gen_log_ppl", gen), **_interval("jensen_bound_per_token", jb),
            **_interval("kl_per_token", kl.kl_per_token if kl else None), **_interval("nfe", nfe),
            "method": method, "kl_note": note, "confidence": conf,
            "wall_time_s": time.perf_counter() - start, "version": __version__,
            "cell": task.key}


def _tasks(grid: Grid, samples: int, kl_samples: int, kl_seconds: float, confidence: float
           ) -> list[CellTask]:
    """Every cell of ``grid`` resolved (languages, plans, denoisers built and checked) and keyed,
    before anything runs."""
    languages: dict[str, Language] = {}
    budget = memory_budget()
    tasks = []
    for cell in grid.cells():
        if cell.language not in languages:
            languages[cell.language] = sweep_language(cell.language)
        lang = languages[cell.language]
        plan = sweep_plan(cell.plan, cell.steps, cell.length)
        eps = sweep_eps_learning(cell.denoiser)
        params = {"axes": cell.as_dict(), "language": lang.to_dict(), "plan": plan.to_dict(),
                  "eps_learning": eps, "samples": samples, "kl_samples": kl_samples,
                  "kl_seconds": kl_seconds, "confidence": confidence}
        entropy = int(_digest(params), 16)
        key = _digest({"params": params, "version": __version__})[:32]
        tasks.append(CellTask(key, cell, lang, plan, eps, entropy, samples, kl_samples,
                              kl_seconds, confidence, budget))
    return tasks


def cell_bytes(task: CellTask) -> float:
    """Estimated peak memory of one cell: the larger of ``sample``'s and ``jensen_bound``'s
    (draws, steps, a state and the denoiser's (samples, L, V) float64 output with its copy)."""
    v = task.language.vocab_size
    return 8.0 * max(task.samples, task.kl_samples) * task.cell.length * (2 * v + 6)


def _check_grid_memory(tasks: list[CellTask]) -> None:
    worst = max(tasks, key=cell_bytes)
    c = worst.cell
    check_memory(f"the sweep cell (language={c.language!r}, length={c.length}, "
                 f"samples={worst.samples})", cell_bytes(worst), argument="samples or length")


# ------------------------------------------------------------------------------ directory


def _manifest(grid: Grid, samples: int, kl_samples: int, kl_seconds: float,
              confidence: float) -> dict:
    return {"format": SWEEP_FORMAT, "grid": grid.as_dict(), "samples": samples,
            "kl_samples": kl_samples, "kl_seconds": kl_seconds, "confidence": confidence}


def _write_json(path: Path, data: dict) -> None:
    text = json.dumps(json_ready(data), indent=1, allow_nan=False) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))


def _claim(directory: Path, manifest: dict, force: bool) -> None:
    """Write the manifest into ``directory``, refusing (unless ``force``) a directory that holds
    another sweep or files that are not a sweep's."""
    path = directory / "sweep.json"
    if path.exists():
        old = read_json_object(path, "sweep manifest")
        old.pop("version", None)
        if old != json_ready(manifest) and not force:
            diff = next((k for k in manifest if old.get(k) != json_ready(manifest[k])),
                        "format")
            raise ArgumentError(
                f"out {str(directory)!r} holds another sweep ({diff} there: "
                f"{_canonical(old.get(diff))[:80]}, here: {_canonical(manifest[diff])[:80]}); "
                "use another directory or force it (--force)")
    elif any(f.name != ".lock" for f in directory.iterdir()) and not force:
        raise ArgumentError(f"out {str(directory)!r} is not empty and holds no sweep.json; use "
                            "another directory or force it (--force)")
    _write_json(path, {**manifest, "version": __version__})


def _finished(directory: Path, tasks: list[CellTask]) -> dict[str, dict]:
    """The rows of the cells already in ``directory/cells`` (numbers restored from the strict
    JSON that ``json_ready`` writes: ``"inf"`` -> inf)."""
    done = {}
    for task in tasks:
        path = directory / "cells" / f"{task.key}.json"
        if path.exists():
            row = read_json_object(path, "sweep cell")
            if row.get("format") != SWEEP_FORMAT:
                raise ArgumentError(f"sweep cell {str(path)!r} is not of format {SWEEP_FORMAT!r}")
            done[task.key] = {c: (float(row[c]) if isinstance(row[c], str) and c not in
                                  ("language", "plan", "denoiser", "method", "kl_note",
                                   "version", "cell") else row[c]) for c in COLUMNS}
    return done


def _typed(table: pandas.DataFrame) -> pandas.DataFrame:
    """``table`` with the dtypes of ``TEXT_COLUMNS``, whatever pandas inferred."""
    types = {c: "float64" for c in COLUMNS}
    types.update({c: "string" for c in TEXT_COLUMNS}, length="int64", seed="int64",
                 samples="int64", steps="Int64")
    return table.astype(types)


def load_results(directory) -> pandas.DataFrame:
    """The table ``run_sweep(out=directory)`` wrote (``directory/results.csv``), with the same
    dtypes."""
    import pandas

    path = Path(directory) / "results.csv"
    if not path.is_file():
        raise ArgumentError(f"no sweep results at {str(path)!r} (run mdm-exact sweep --out "
                            f"{str(directory)} first)")
    return _typed(pandas.read_csv(path))


def _save_table(directory: Path, table) -> None:
    write_atomic(directory / "results.csv", lambda tmp: table.to_csv(tmp, index=False))
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return
    write_atomic(directory / "results.parquet", lambda tmp: table.to_parquet(tmp, index=False))


# ------------------------------------------------------------------------------ backends


def _init_worker(numba_threads: int) -> None:
    """A pool worker's numba threads: ``set_num_threads`` and the engine's own cap
    (``posterior.THREADS_ENV``). Not ``NUMBA_NUM_THREADS``: numba re-reads it at every compile
    and refuses a value that differs from its running thread pool."""
    import numba

    from .posterior import THREADS_ENV

    os.environ[THREADS_ENV] = str(numba_threads)
    numba.set_num_threads(max(1, min(numba_threads, numba.config.NUMBA_NUM_THREADS)))


def _run_local(tasks: list[CellTask], workers: int) -> Iterator[dict]:
    """Rows as cells finish: in this process for one worker, else in a pool of ``workers``
    spawned processes with cores // workers numba threads each."""
    if workers == 1:
        yield from map(run_cell, tasks)
        return
    threads = max(1, _usable_cores() // workers)
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker, initargs=(threads,))
    try:
        futures = [pool.submit(run_cell, task) for task in tasks]
        for future in concurrent.futures.as_completed(futures):
            yield future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _dask_client(scheduler: str | None, workers: int, timeout: float):
    from distributed import Client, LocalCluster

    if scheduler is None:
        import logging

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout=timeout), None
    except (OSError, ValueError, TypeError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArgumentError(f"scheduler {scheduler!r} is unreachable within {timeout:g} s "
                            f"({detail})") from None


def _run_dask(tasks: list[CellTask], scheduler: str | None, workers: int, timeout: float
              ) -> Iterator[dict]:
    """Rows as cells finish on a Dask cluster (a ``LocalCluster`` of ``workers`` processes with
    one thread each when ``scheduler`` is None); rows come back to this process, so workers
    need no shared file system."""
    from dataclasses import replace

    from distributed import as_completed

    client, cluster = _dask_client(scheduler, workers, timeout)
    try:
        if cluster is not None:
            threads = max(1, _usable_cores() // workers)
            tasks = [replace(t, numba_threads=threads) for t in tasks]
        futures = client.map(run_cell, tasks, key=[f"mdm-exact-cell-{t.key}" for t in tasks],
                             pure=False)
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ------------------------------------------------------------------------------ run


@contextlib.contextmanager
def _held(directory: Path | None) -> Iterator[Path | None]:
    """``directory`` created and locked (``directory_lock``) for the block; nothing for None."""
    if directory is None:
        yield None
        return
    directory.mkdir(exist_ok=True)
    with directory_lock(directory, "out"):
        yield directory


def _check_options(samples, backend, workers, scheduler, timeout, confidence) -> int:
    from .estimate import check_confidence

    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 2:
        raise ArgumentError(f"samples must be an integer >= 2, got {samples!r}")
    if backend not in ("local", "dask"):
        raise ArgumentError(f"backend must be 'local' or 'dask', got {backend!r}")
    if scheduler is not None and backend != "dask":
        raise ArgumentError(f"scheduler {scheduler!r} applies to backend 'dask' only")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ArgumentError(f"workers must be an integer >= 1, got {workers!r}")
    if scheduler is not None and workers is not None:
        raise ArgumentError("workers applies to the local pool and a LocalCluster, not to "
                            f"scheduler {scheduler!r}")
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ArgumentError(f"timeout must be a positive number of seconds, got {timeout!r}")
    check_confidence(confidence)
    return _usable_cores() if workers is None else workers


def run_sweep(
    grid: Grid,
    samples: int = 1000,
    *,
    out=None,
    backend: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    timeout: float = CONNECT_TIMEOUT,
    force: bool = False,
    kl_samples: int | None = None,
    kl_seconds: float = KL_SECONDS,
    confidence: float = 0.95,
    progress: bool = False,
) -> pandas.DataFrame:
    """Run every cell of ``grid`` with ``samples`` draws; one row per cell, in grid order.

    ``out``: a directory for the cells, ``results.csv`` (and ``results.parquet`` with pyarrow)
    and the manifest ``sweep.json``; rerunning skips finished cells; a directory holding another
    sweep is refused unless ``force``. ``backend``: ``"local"`` (``workers`` processes, default
    the usable cores) or ``"dask"`` (``scheduler`` ``"tcp://HOST:PORT"``, refused after
    ``timeout`` seconds if unreachable; None starts a ``LocalCluster`` of ``workers``).
    ``kl_samples``: draws of the exact-likelihood KL (default min(samples, 100)), skipped where
    estimated above ``kl_seconds``. ``progress``: a summary line and a tqdm bar on stderr.
    Every axis value is checked and the memory of the largest cell estimated
    (``cell_bytes``) before any cell runs. ``df.attrs`` holds ``computed`` and ``reused``.
    """
    import pandas

    if not isinstance(grid, Grid):
        raise ArgumentTypeError(f"grid must be a mdm_exact.sweep.Grid, got {type(grid).__name__}")
    workers = _check_options(samples, backend, workers, scheduler, timeout, confidence)
    samples = int(samples)
    kl_samples = max(2, min(samples, 100)) if kl_samples is None else int(kl_samples)
    if kl_samples < 2:
        raise ArgumentError(f"kl_samples must be >= 2, got {kl_samples}")
    if not (isinstance(kl_seconds, int | float) and kl_seconds >= 0):
        raise ArgumentError(f"kl_seconds must be a number >= 0, got {kl_seconds!r}")
    tasks = _tasks(grid, samples, kl_samples, float(kl_seconds), float(confidence))
    _check_grid_memory(tasks)
    directory = None if out is None else output_dir("out", out)
    with _held(directory) as held:
        rows: dict[str, dict] = {}
        if held is not None:
            _claim(held, _manifest(grid, samples, kl_samples, float(kl_seconds),
                                   float(confidence)), force)
            (held / "cells").mkdir(exist_ok=True)
            rows = _finished(held, tasks)
        todo = [t for t in tasks if t.key not in rows]
        if progress:
            where = f" in {str(held)!r}" if held is not None else ""
            print(f"sweep: {len(tasks)} cells, {len(rows)} already done{where}, {len(todo)} to "
                  f"compute ({backend}, {workers if scheduler is None else scheduler})",
                  file=sys.stderr, flush=True)
        if todo:
            run = (_run_local(todo, min(workers, len(todo))) if backend == "local"
                   else _run_dask(todo, scheduler, min(workers, len(todo)), timeout))
            with progress_bar(progress, total=len(todo), desc="sweep cells", unit="cell") as bar:
                for row in run:
                    if held is not None:
                        _write_json(held / "cells" / f"{row['cell']}.json",
                                    {"format": SWEEP_FORMAT, **row})
                    rows[row["cell"]] = row
                    bar.update()
        table = _typed(pandas.DataFrame([rows[t.key] for t in tasks], columns=list(COLUMNS)))
        if held is not None:
            _save_table(held, table)
    table.attrs.update(computed=len(todo), reused=len(tasks) - len(todo))
    return table


def summary_rows(table, columns: Sequence[str] = ("ser", "gen_log_ppl", "jensen_bound_per_token",
                                                  "kl_per_token", "nfe")) -> list[tuple]:
    """Text rows (a header, then one per cell) of the axes that vary and ``columns`` with their
    intervals, for a summary table."""
    axes = [a for a in AXES if table[a].nunique(dropna=False) > 1] or ["language"]

    def fmt(row, q) -> str:
        if row[q] is None or (isinstance(row[q], float) and math.isnan(row[q])):
            return "n/a"
        return f"{row[q]:.4g} [{row[f'{q}_low']:.3g}, {row[f'{q}_high']:.3g}]"

    out = [(*axes, *columns)]
    for _, row in table.iterrows():
        out.append((*(str(row[a]) for a in axes), *(fmt(row, q) for q in columns)))
    return out


__all__ = ["AXES", "COLUMNS", "CONNECT_TIMEOUT", "ESTIMATES", "FAMILIES", "KL_SECONDS",
           "SWEEP_FORMAT", "TEXT_COLUMNS", "Cell", "CellTask", "Grid", "cell_bytes",
           "load_results", "plan_kind", "plan_takes_steps", "run_cell", "run_sweep",
           "split_language", "summary_rows", "sweep_eps_learning", "sweep_language",
           "sweep_plan"]
