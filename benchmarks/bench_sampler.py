"""Benchmark of the Monte-Carlo sampler (``mdm_exact.sampling``).

Two measurements:

(a) ``sample()``: 1000 sequences of length L = 512 from ``preset("3-gram")`` (V = 8) with
    ``Schedule.linear(64)`` and the exact ``Oracle`` denoiser; wall-clock time of the whole call
    (64 denoiser calls on up to 1000 x 512 partially revealed rows). Target: < 20 s on 2 cores.
(b) The per-call cost of the ``Oracle`` at V = 8, L = 512, B = 256 (the 3-gram preset, rows
    sampled from the language with exactly half of each row's positions masked, seeded) against
    a plain per-position Python loop written below: the approach of existing oracle-sampler code
    such as dllm_sampler, i.e. for each row, scaled forward and backward messages with a Python
    loop over positions and numpy vector-matrix products, on the first-order dense HMM view
    ``lang.as_hmm()`` (64 states). The two are first checked to agree to 1e-10 at every
    position; then each is timed (best of a few interleaved ``time.perf_counter`` repeats after
    a warm-up). Target: >= 20x.

Usage::

    python benchmarks/bench_sampler.py            # full run; writes results + docs section
    python benchmarks/bench_sampler.py --quick    # seconds; results/sampler.quick.json only

The full run writes ``benchmarks/results/sampler.json`` and rewrites the "Sampler" section of
``docs/benchmarks.md`` in place (appending it when absent; other sections are left alone).
"""

from __future__ import annotations

import statistics

import numba
import numpy as np
from _common import Meter, loadavg, masked_sample, parse_args, report_header, save, timed

from mdm_exact import preset
from mdm_exact.metrics import sequence_error_rate
from mdm_exact.sampling import Oracle, sample
from mdm_exact.schedules import Schedule

TOLERANCE = 1e-10
SAMPLE_TARGET_S = 20.0
ORACLE_TARGET = 20.0
BUSY_OTHER_CPUS = 0.25
"""Other processes using more CPU than this during a timed block mark the run as shared."""
BUSY_LOADAVG = 1.5
"""Fallback where /proc/stat is unavailable: a 1-minute load average above this at the start."""


# ------------------------------------------------------------------------- Python-loop baseline


def python_loop_oracle(hmm, x: np.ndarray) -> np.ndarray:
    """(B, L, V) token marginals given the revealed tokens, one row and one position at a time.

    First-order HMM view (``initial``, ``transition`` A, ``emission`` E): scaled forward
    messages a_j = normalise((a_{j-1} @ A) * e_j), backward b_j = normalise(A @ (e_{j+1} *
    b_{j+1})), with e_j = E[:, x_j] at revealed positions and all ones at masked ones; the
    marginal of position j is normalise((a_j * b_j) @ E) (one-hot where revealed).
    """
    a_mat, emit, init = hmm.transition, hmm.emission, hmm.initial
    num_states = init.shape[0]
    ones = np.ones(num_states)
    batch, length = x.shape
    out = np.empty((batch, length, emit.shape[1]))
    for r in range(batch):
        row = x[r]
        evid = [ones if t < 0 else emit[:, t] for t in row]
        alpha = np.empty((length, num_states))
        a = init * evid[0]
        a = a / a.sum()
        alpha[0] = a
        for j in range(1, length):
            a = (a @ a_mat) * evid[j]
            a = a / a.sum()
            alpha[j] = a
        b = ones
        for j in range(length - 1, -1, -1):
            tok = (alpha[j] * b) @ emit
            out[r, j] = tok / tok.sum()
            b = a_mat @ (evid[j] * b)
            b = b / b.sum()
    return out


# ---------------------------------------------------------------------------------- benchmarks


def bench_sample(num: int, length: int, steps: int, seed: int, repeats: int) -> dict:
    lang = preset("3-gram")
    schedule = Schedule.linear(steps)
    with Meter() as warm:  # numba compile / cache load
        sample(lang, Schedule.linear(4), 16, 8, rng=seed)
    runs = []
    res = None
    for _ in range(repeats):
        with Meter() as m:
            res = sample(lang, schedule, length, num, rng=np.random.default_rng(seed))
        runs.append(m.as_dict())
        print(f"  (a) sample: {m.wall_s:.2f} s wall, {m.cpu_s:.2f} s CPU, "
              f"load {m.loadavg_before} -> {m.loadavg_after}", flush=True)
    best = min(r["wall_s"] for r in runs)
    ser = sequence_error_rate(lang, res.tokens)
    return {
        "name": "sample",
        "language": 'preset("3-gram")',
        "schedule": f"Schedule.linear({steps})",
        "denoiser": "Oracle",
        "num_samples": num,
        "length": length,
        "best_wall_s": best,
        "median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "samples_per_s": num / best,
        "denoiser_calls": int(np.unique(res.reveal_step).size),
        "mean_nfe_cache": float(res.nfe_cache.mean()),
        "ser": ser.as_dict(),
        "warmup_s": warm.wall_s,
        "runs": runs,
        "target_s": SAMPLE_TARGET_S,
        "target_met": bool(best < SAMPLE_TARGET_S),
    }


def bench_oracle(batch: int, length: int, seed: int, repeats: int, budget: float) -> dict:
    lang = preset("3-gram")
    hmm = lang.as_hmm()
    x = masked_sample(lang, batch, length, seed)
    oracle = Oracle(lang)
    oracle(x[:2])  # warm-up
    diff = float(np.max(np.abs(oracle(x) - python_loop_oracle(hmm, x))))
    if not diff <= TOLERANCE:
        raise AssertionError(f"Oracle and the Python loop disagree by {diff:.3g} > {TOLERANCE}")
    with Meter() as load:
        t = timed({"ours": lambda: oracle(x), "baseline": lambda: python_loop_oracle(hmm, x)},
                  repeats, budget)
    ours, base = t["ours"], t["baseline"]
    ratio = base["best_s"] / ours["best_s"]
    return {
        "name": "oracle call",
        "ours": "Oracle(preset('3-gram')) (mdm_exact.posterior, n-gram chain, numba)",
        "baseline": f"per-row Python loop, numpy vector-matrix products on as_hmm() "
                    f"({hmm.num_states} states)",
        "batch": batch,
        "length": length,
        "masked_fraction": 0.5,
        "ours_best_s": ours["best_s"],
        "baseline_best_s": base["best_s"],
        "ours_seq_per_s": batch / ours["best_s"],
        "baseline_seq_per_s": batch / base["best_s"],
        "ratio": ratio,
        "ratio_median": base["median_s"] / ours["median_s"],
        "ratio_cpu_time": min(base["process_cpu_s"]) / min(ours["process_cpu_s"]),
        "max_abs_diff": diff,
        "target_ratio": ORACLE_TARGET,
        "target_met": bool(ratio >= ORACLE_TARGET),
        "ours_timing": ours,
        "baseline_timing": base,
        "load": load.as_dict(),
    }


# ---------------------------------------------------------------------------------------- docs


def _met(flag: bool) -> str:
    return "met" if flag else "**missed**"


def _load(meter: dict) -> str:
    other = meter.get("other_load_cpus")
    other = "n/a" if other is None else f"{other:.2f} CPUs"
    return f"{meter.get('loadavg_before')} -> {meter.get('loadavg_after')}; other {other}"


def docs_section(report: dict) -> str:
    m, a, b = report["machine"], report["sample"], report["oracle"]
    blocks = [*a["runs"], b["load"]]
    others = [r["other_load_cpus"] for r in blocks if r.get("other_load_cpus") is not None]
    start = report.get("loadavg_start") or [0.0]
    peak = max(others) if others else None
    shared = (peak > BUSY_OTHER_CPUS) if peak is not None else start[0] > BUSY_LOADAVG
    peak_text = "n/a" if peak is None else f"{peak:.2f} CPUs"
    load_text = (
        f"`os.getloadavg()` (1, 5, 15 min): {report.get('loadavg_start')} at the start,\n"
        f"{report.get('loadavg_end')} at the end (this process's own busy threads add up to "
        f"{m['numba_threads']}); other\nprocesses used at most {peak_text} during the timed "
        "blocks."
    )
    verdict = (
        "**The machine was shared with other processes during this run**, so the wall-clock\n"
        "times are pessimistic; the process CPU times below say by how much."
        if shared else "The machine was otherwise idle during the timed blocks."
    )
    summary = "\n".join([
        "| Measurement | Result | Target |",
        "|---|---:|---|",
        f"| (a) `sample()` {a['num_samples']} x {a['length']}, `{a['schedule']}`, Oracle "
        f"| {a['best_wall_s']:.2f} s ({a['samples_per_s']:.0f} seq/s) "
        f"| < {SAMPLE_TARGET_S:g} s: {_met(a['target_met'])} |",
        f"| (b) Oracle call, B = {b['batch']}, L = {b['length']} "
        f"| {b['ours_best_s'] * 1e3:.1f} ms ({b['ours_seq_per_s']:,.0f} seq/s) | |",
        f"| (b) Python-loop baseline, same batch "
        f"| {b['baseline_best_s']:.2f} s ({b['baseline_seq_per_s']:,.0f} seq/s) | |",
        f"| (b) speed ratio, best wall times (median-based {b['ratio_median']:.1f}x, "
        f"process-CPU-time {b['ratio_cpu_time']:.1f}x) | {b['ratio']:.1f}x "
        f"| >= {ORACLE_TARGET:g}x: {_met(b['target_met'])} |",
    ])
    timing = "\n".join([
        "| Timed block | Wall | Process CPU | Load average before -> after; other processes |",
        "|---|---:|---:|---|",
        *[f"| (a) run {i + 1} | {r['wall_s']:.2f} s | {r['process_cpu_s']:.2f} s | {_load(r)} |"
          for i, r in enumerate(a["runs"])],
        f"| (b) all repeats of both | {b['load']['wall_s']:.2f} s "
        f"| {b['load']['process_cpu_s']:.2f} s | {_load(b['load'])} |",
    ])
    return f"""## Sampler

`python benchmarks/bench_sampler.py` (raw numbers: `benchmarks/results/sampler.json`).

- **(a) `sample()`**: {a['num_samples']} sequences of length L = {a['length']} from
  `{a['language']}` (V = 8) with `{a['schedule']}` and the exact `Oracle` denoiser
  ({a['denoiser_calls']} denoiser calls on up to {a['num_samples']} rows each; mean ddpm_cache
  NFE {a['mean_nfe_cache']:.1f}; SER of the output {a['ser']['value']:.3f}). Wall-clock time of
  the whole call after a numba warm-up (best of {len(a['runs'])}).
- **(b) one `Oracle` call** at V = 8, L = {b['length']}, B = {b['batch']} (`{a['language']}`,
  rows sampled from the language with exactly half of each row's positions masked) against a
  plain per-position Python loop (`python_loop_oracle` in the script): for each row, scaled
  forward and backward messages with numpy vector-matrix products on the dense first-order
  HMM view `as_hmm()` (64 states), as existing oracle-sampler code (e.g. dllm_sampler) does.
  The two agree to {b['max_abs_diff']:.1e} at every position (checked <= {TOLERANCE:g}) before
  timing; best of interleaved repeats ({len(b['ours_timing']['times_s'])} each).

Machine: {m['cpu_model']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs,
{m['platform']}; Python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}, numba
{m['numba']} ({m['numba_threads']} threads, {m['numba_threading_layer']} layer).
Run {report['timestamp']}. {load_text}
{verdict}
"Process CPU" counts every thread of this process (numba's included), so it can exceed the
wall time; the process-CPU-time ratio in (b) is the per-core comparison (the Python loop runs
on one core).

{summary}

{timing}
"""


# ---------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(
        argv, __doc__, "small sizes, seconds (writes sampler.quick.json, no docs update)",
        {"--samples": (1000, 100, "(a) sequences (default 1000, quick 100)"),
         "--length": (512, 128, "sequence length (default 512, quick 128)"),
         "--steps": (64, 16, "(a) linear schedule steps (default 64)"),
         "--batch": (256, 16, "(b) batch (default 256, quick 16)"),
         "--sample-repeats": (2, 1, "(a) timed runs (default 2, quick 1)"),
         "--repeats": (5, 2, "(b) timed repeats (default 5, quick 2)")},
        "(b) stop repeating after this many seconds (>= 2 rounds)",
    )
    num, length, steps, batch = args.samples, args.length, args.steps, args.batch
    config = {"samples": num, "length": length, "steps": steps, "batch": batch,
              "sample_repeats": args.sample_repeats, "repeats": args.repeats,
              "budget_s": args.budget, "seed": args.seed, "quick": args.quick,
              "tolerance": TOLERANCE}

    start_load = loadavg()
    print(f"bench_sampler: samples={num} L={length} N={steps} B={batch} "
          f"threads={numba.get_num_threads()} loadavg={start_load}", flush=True)
    sample_result = bench_sample(num, length, steps, args.seed, args.sample_repeats)
    oracle_result = bench_oracle(batch, length, args.seed, args.repeats, args.budget)
    print(f"  (b) oracle {oracle_result['ours_best_s'] * 1e3:.1f} ms vs python loop "
          f"{oracle_result['baseline_best_s']:.2f} s: {oracle_result['ratio']:.1f}x "
          f"(max abs diff {oracle_result['max_abs_diff']:.1e})", flush=True)

    report = {
        **report_header("sampler", argv, config, "scipy"),
        "loadavg_start": start_load,
        "loadavg_end": loadavg(),
        "sample": sample_result,
        "oracle": oracle_result,
    }
    wrote = save(report, args, docs_section)
    print(f"\n(a) sample: {sample_result['best_wall_s']:.2f} s "
          f"(target < {SAMPLE_TARGET_S:g} s: {_met(sample_result['target_met'])})")
    print(f"(b) oracle speed-up: {oracle_result['ratio']:.1f}x "
          f"(target >= {ORACLE_TARGET:g}x: {_met(oracle_result['target_met'])})")
    print(wrote)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
