"""Issue 14: parameter sweeps as tidy tables (mdm_exact.sweep, ``mdm-exact sweep``).

The same tiny grid gives the same table with one local worker, two local processes and a real
Dask ``LocalCluster`` (scheduler and worker processes, no mocks); a sweep killed mid-way
resumes with only its missing cells; every bad input of the issue is refused before any cell
runs. ``wall_time_s`` is the one column allowed to differ between runs.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from mdm_exact import BudgetError, MdmExactError, preset
from mdm_exact.cli import main
from mdm_exact.sampling import sample
from mdm_exact.schedules import Schedule
from mdm_exact.sweep import COLUMNS, Grid, load_results, run_cell, run_sweep, split_language

ROOT = Path(__file__).resolve().parents[1]
GRID = Grid(language=("2-gram", "3-gram:0"), length=(12,), steps=(3, 6))
SAMPLES = 24


def same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    keep = [c for c in COLUMNS if c != "wall_time_s"]
    pdt.assert_frame_equal(a[keep].reset_index(drop=True), b[keep].reset_index(drop=True))


@pytest.fixture(scope="module")
def one_worker() -> pd.DataFrame:
    return run_sweep(GRID, SAMPLES, workers=1)


def test_table_has_one_row_per_cell_with_intervals(one_worker):
    t = one_worker
    assert list(t.columns) == list(COLUMNS)
    assert len(t) == 4 and t.attrs == {"computed": 4, "reused": 0}
    assert list(t["language"]) == ["2-gram", "2-gram", "3-gram:0", "3-gram:0"]
    assert list(t["steps"]) == [3, 6, 3, 6]
    for q in ("ser", "jensen_bound_per_token", "nfe"):
        assert np.all(t[f"{q}_low"] <= t[q]) and np.all(t[q] <= t[f"{q}_high"])
    # the unpruned 3-gram has full support: no sequence error, finite perplexity
    unpruned = t[t["language"] == "3-gram:0"]
    assert np.all(unpruned["ser"] == 0) and np.all(np.isfinite(unpruned["gen_log_ppl"]))
    # a 2-gram under a schedule has an exact likelihood (chain DP): the KL is there
    assert t.loc[0, "kl_per_token"] >= 0 and pd.isna(t.loc[0, "kl_note"])
    assert set(t["version"]) == {__import__("mdm_exact").__version__}


def test_a_cell_is_the_sampler_with_its_own_seed(one_worker, ref):
    """A cell's SER is the share of ``sample``'s draws (first stream spawned from the cell's
    SeedSequence) outside supp q, by brute force on the tables; the same cell run alone
    (another grid) gives the same row."""
    from mdm_exact.sweep import _tasks

    task = _tasks(GRID, SAMPLES, SAMPLES, 60.0, 0.95)[1]
    rng = np.random.default_rng(np.random.SeedSequence(task.entropy).spawn(3)[0])
    lang = preset("2-gram")
    res = sample(lang, Schedule.linear(6), 12, SAMPLES, rng=rng)
    outside = sum(ref.ngram_prob(2, lang.initial, lang.transition, list(row)) == 0
                  for row in res.tokens)
    assert 0 < outside < SAMPLES
    assert one_worker.loc[1, "ser"] == outside / SAMPLES
    alone = run_sweep(Grid(language=("2-gram",), length=(12,), steps=(6,)), SAMPLES, workers=1)
    same_table(alone, one_worker.iloc[[1]])
    assert run_cell(task)["ser"] == one_worker.loc[1, "ser"]


def test_two_local_processes_give_the_same_table(one_worker, tmp_path):
    two = run_sweep(GRID, SAMPLES, workers=2, out=tmp_path / "run")
    same_table(two, one_worker)
    # and the written table reads back the same
    same_table(load_results(tmp_path / "run"), one_worker)


def test_dask_local_cluster_gives_the_same_table(one_worker):
    pytest.importorskip("distributed")
    dask = run_sweep(GRID, SAMPLES, backend="dask", workers=2)
    same_table(dask, one_worker)


def _cell_files(directory: Path) -> set[str]:
    cells = directory / "cells"
    # not the temporary files of atomic writes (".tmp-..."), which a kill can leave behind
    return {p.name for p in cells.glob("*.json") if not p.name.startswith(".")} \
        if cells.is_dir() else set()


def test_killed_sweep_resumes_with_only_the_missing_cells(tmp_path):
    out = tmp_path / "killed"
    argv = ["--preset", "2-gram", "--length", "48", "--steps", "2,3,4,5,6,7,8,9",
            "--samples", "400"]
    proc = subprocess.Popen([sys.executable, "-m", "mdm_exact", "sweep", *argv, "--out",
                             str(out), "--workers", "1"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        while len(_cell_files(out)) < 2 and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done = _cell_files(out)
    assert 2 <= len(done) < 8, "the sweep finished before it was killed"
    grid = Grid(language=("2-gram",), length=(48,), steps=tuple(range(2, 10)))
    resumed = run_sweep(grid, 400, workers=1, out=out)  # the dead process's lock is taken over
    assert resumed.attrs == {"computed": 8 - len(done), "reused": len(done)}
    assert _cell_files(out) == {f"{key}.json" for key in resumed["cell"]}
    same_table(resumed, run_sweep(grid, 400, workers=1))


def test_rerun_reuses_cells_and_new_samples_make_new_cells(tmp_path):
    grid = Grid(language=("2-gram",), length=(8,), steps=(2,))
    first = run_sweep(grid, 8, workers=1, out=tmp_path)
    again = run_sweep(grid, 8, workers=1, out=tmp_path)
    assert again.attrs == {"computed": 0, "reused": 1}
    same_table(again, first)
    with pytest.raises(MdmExactError, match=r"holds another sweep \(samples there: 8, here: 9\)"):
        run_sweep(grid, 9, workers=1, out=tmp_path)
    other = run_sweep(grid, 9, workers=1, out=tmp_path, force=True)
    assert other.attrs == {"computed": 1, "reused": 0}
    assert other.loc[0, "cell"] != first.loc[0, "cell"]


@pytest.mark.parametrize("axis, grid, match", [
    ("language", Grid(language=("5-gram",), length=(8,), steps=(2,)), "language '5-gram'"),
    ("language", Grid(language=("2-gram:1.5",), length=(8,), steps=(2,)), "'2-gram:1.5'"),
    ("plan", Grid(language=("2-gram",), length=(8,), plan=("zigzag",), steps=(2,)),
     "plan 'zigzag'"),
    ("denoiser", Grid(language=("2-gram",), length=(8,), steps=(2,), denoiser=("noisy",)),
     "'noisy'"),
    ("steps", Grid(language=("2-gram",), length=(8,)), "plan 'linear' needs the steps axis"),
    ("empty", Grid(language=(), length=(8,), steps=(2,)), "the grid is empty: axis 'language'"),
    ("steps", Grid(language=("2-gram",), length=(8,), plan=("eb:1",), steps=(2,)),
     "the steps axis applies to the plans"),
    ("plan", Grid(language=("2-gram",), length=(8,), plan=("missing.json",)), "missing.json"),
])
def test_bad_axis_values_are_refused_before_any_cell(tmp_path, axis, grid, match):
    with pytest.raises(MdmExactError, match=match):
        run_sweep(grid, 8, workers=1, out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_bad_axis_types_and_options_are_refused():
    with pytest.raises(TypeError, match="'length' must hold integers"):
        Grid(language=("2-gram",), length=("8",))
    with pytest.raises(ValueError, match="'seed' must hold integers >= 0"):
        Grid(language=("2-gram",), length=(8,), seed=(-1,))
    grid = Grid(language=("2-gram",), length=(8,), steps=(2,))
    for kwargs, match in (({"backend": "spark"}, "backend must be"),
                          ({"scheduler": "tcp://x:1"}, "applies to backend 'dask' only"),
                          ({"workers": 0}, "workers must be")):
        with pytest.raises(ValueError, match=match):
            run_sweep(grid, 8, **kwargs)
    with pytest.raises(ValueError, match="samples must be an integer >= 2"):
        run_sweep(grid, 1)


def test_memory_above_the_budget_is_refused_with_the_estimate(tmp_path, monkeypatch):
    monkeypatch.setenv("MDM_EXACT_MAX_MEMORY", "1MB")
    grid = Grid(language=("2-gram",), length=(8, 4096), steps=(2,))
    with pytest.raises(BudgetError, match=r"length=4096.*would need about [0-9.]+ GiB"):
        run_sweep(grid, 100, workers=1, out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_unreachable_scheduler_is_one_line(capsys):
    pytest.importorskip("distributed")
    code = main(["sweep", "--preset", "2-gram", "--length", "8", "--steps", "2", "--samples",
                 "4", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9", "--timeout", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("mdm-exact: error: scheduler 'tcp://127.0.0.1:9' is unreachable "
                              "within 1 s")


def test_cli_sweep_json_and_figure_from_the_directory(tmp_path, capsys):
    out = tmp_path / "fig1"
    argv = ["sweep", "--preset", "2-gram,2-gram:0", "--length", "8", "--steps", "2,4",
            "--samples", "6", "--out", str(out), "--workers", "1"]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["computed"] == 4 and len(data["rows"]) == 4
    assert data["rows"][0]["language"] == "2-gram" and data["rows"][0]["steps"] == 2
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "4 cells: 0 computed, 4 reused" in text
    png = tmp_path / "fig1.png"
    assert main(["figure", "fig1", "--from", str(out), "--out", str(png)]) == 0
    assert png.stat().st_size > 0
    assert main(["figure", "fig1", "--from", str(out), "--out", str(png), "--overwrite",
                 "--samples", "3"]) == 2
    assert "--samples do not apply with --from" in capsys.readouterr().err
    assert main(["sweep", "--length", "8", "--steps", "2"]) == 2
    assert capsys.readouterr().err == ("mdm-exact: error: give --preset NAME,... or --language "
                                       "FILE,...\n")


def test_figure_1_takes_a_table():
    """GenPPL from the NAME:0 rows (exp of gen_log_ppl), SER from the pruned rows, by steps."""
    from mdm_exact.plotting import figure_1, figure_1_data_from_table

    rows = []
    for label, base in (("2-gram", 0.0), ("2-gram:0", 1.0)):
        for n in (4, 2):
            rows.append({"language": label, "length": 8, "plan": "linear", "steps": n,
                         "denoiser": "oracle", "seed": 0, "samples": 10,
                         "ser": base + n / 10, "ser_low": base, "ser_high": base + 1,
                         "gen_log_ppl": base + n, "gen_log_ppl_low": base,
                         "gen_log_ppl_high": base + 2 * n})
    d = figure_1_data_from_table(pd.DataFrame(rows))
    assert d.languages == ("2-gram",) and d.steps == (2, 4) and d.length == 8
    np.testing.assert_allclose(d.ser, [[0.2, 0.4]])
    np.testing.assert_allclose(d.gen_ppl, [[math.exp(3), math.exp(5)]])
    np.testing.assert_allclose(d.gen_ppl_high, [[math.exp(5), math.exp(9)]])
    h = preset("2-gram", threshold=0).entropy(8).value / 8
    assert d.ar_gen_ppl[0] == pytest.approx(math.exp(h))
    assert len(figure_1(data=pd.DataFrame(rows)).axes) == 2
    two_lengths = pd.DataFrame([rows[0], {**rows[1], "length": 16}])
    with pytest.raises(ValueError, match="column 'length' must hold one value"):
        figure_1_data_from_table(two_lengths)


def test_policies_plan_files_and_perturbed_denoisers_are_cells(tmp_path):
    """A policy has no steps and no Jensen bound; a plan file gives the same row as the plan
    it holds would under its own label; EPS = 0 perturbs nothing but is its own cell."""
    from mdm_exact.plan_files import save_plan

    path = save_plan(Schedule.linear(2), tmp_path / "linear2.json")
    grid = Grid(language=("2-gram",), length=(4,), plan=("topk-confidence:2", str(path)),
                denoiser=("oracle", "perturbed:0"))
    t = run_sweep(grid, 8, workers=1)
    assert len(t) == 4 and t["steps"].isna().all()
    policy = t[t["plan"] == "topk-confidence:2"]
    assert policy["jensen_bound_per_token"].isna().all() and (policy["nfe"] == 2).all()
    from_file = t[t["plan"] == str(path)]
    assert from_file["jensen_bound_per_token"].notna().all()
    assert from_file["cell"].nunique() == 2


def test_split_language():
    assert split_language("2-gram") == ("2-gram", None)
    assert split_language("hmm:0.01") == ("hmm", 0.01)
    assert split_language("runs/my:lang.json") == ("runs/my:lang.json", None)


def test_a_pool_worker_can_still_compile_after_its_threads_are_set():
    """Regression: the worker initialiser once set NUMBA_NUM_THREADS after numba had started
    its threads, and the next compile in that worker raised (the Fig. 1 sweep died there)."""
    code = ("from mdm_exact.sweep import _init_worker\n_init_worker(1)\nimport numba\n"
            "assert numba.njit(lambda x: x + 1)(1) == 2\nassert numba.get_num_threads() == 1\n"
            "import os\nassert os.environ['MDM_EXACT_THREADS'] == '1'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in os.environ.items()
                                            if k not in ("NUMBA_NUM_THREADS", "MDM_EXACT_THREADS")})
    assert done.returncode == 0, done.stderr
