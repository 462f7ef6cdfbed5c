"""Benchmark of the Monte-Carlo sampler (``mdm_exact.sampling``).

Three measurements:

(a) ``sample()``: 1000 sequences of length L = 512 from ``preset("3-gram")`` (V = 8) with
    ``Schedule.linear(64)`` and the exact ``Oracle`` denoiser; wall-clock time of the whole call.
    The sampler asks the Oracle only for the positions each step reveals (``Oracle.marginals_at``:
    jumps between revealed tokens, ``mdm_exact.posterior_at``). Target: < 4.1 s, twice as fast as
    the 8.2 s of the whole-row path this replaced. For context, the same call through the
    whole-row path (the Oracle wrapped as an arbitrary denoiser) in the same run, checked to draw
    the same tokens.
(b) The per-call cost of the ``Oracle`` at V = 8, L = 512, B = 256 (the 3-gram preset, rows
    sampled from the language with exactly half of each row's positions masked, seeded) against
    a plain per-position Python loop written below: the approach of existing oracle-sampler code
    such as dllm_sampler, i.e. for each row, scaled forward and backward messages with a Python
    loop over positions and numpy vector-matrix products, on the first-order dense HMM view
    ``lang.as_hmm()`` (64 states). The two are first checked to agree to 1e-10 at every
    position; then each is timed (best of a few interleaved ``time.perf_counter`` repeats after
    a warm-up). Target: >= 20x.
(c) (a) for ``preset("2-gram")``: the fast path against the whole-row path in the same run,
    checked to draw the same tokens. Target: >= 5x.

Usage::

    python benchmarks/bench_sampler.py            # full run; writes results + docs section
    python benchmarks/bench_sampler.py --quick    # seconds; results/sampler.quick.json only

The full run appends a row to the history ``benchmarks/results/sampler.json``, prints its
ratio to the last release row measured on the same machine, and regenerates the "Sampler"
section of ``docs/benchmarks.md`` from the history (other sections are left alone).
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
BEFORE_S = 8.2
"""(a) before the fast path (the whole-row Oracle on every step), as the issue measured it."""
SAMPLE_TARGET_S = BEFORE_S / 2
ORACLE_TARGET = 20.0
BIGRAM_TARGET = 5.0
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


def _whole_rows(oracle: Oracle):
    """The Oracle as an arbitrary denoiser: the sampler then asks it for whole rows."""
    return lambda x: oracle(x)


def _time_sample(lang, schedule, length: int, num: int, seed: int, repeats: int, label: str,
                 denoiser=None) -> tuple[list[dict], np.ndarray]:
    runs = []
    res = None
    for _ in range(repeats):
        with Meter() as m:
            res = sample(lang, schedule, length, num, denoiser=denoiser,
                         rng=np.random.default_rng(seed))
        runs.append(m.as_dict())
        print(f"  {label}: {m.wall_s:.2f} s wall, {m.cpu_s:.2f} s CPU, "
              f"load {m.loadavg_before} -> {m.loadavg_after}", flush=True)
    return runs, res


def _best(runs: list[dict]) -> float:
    return min(r["wall_s"] for r in runs)


def bench_sample(name: str, num: int, length: int, steps: int, seed: int, repeats: int,
                 whole_row_repeats: int) -> dict:
    """``sample()`` with the Oracle (fast path) and, in the same run, through the whole-row
    path; the two must draw the same tokens."""
    lang = preset(name)
    schedule = Schedule.linear(steps)
    oracle = Oracle(lang)
    with Meter() as warm:  # numba compile / cache load, tables of powers
        sample(lang, Schedule.linear(4), length, 8, rng=seed)
        sample(lang, Schedule.linear(4), 16, 8, denoiser=_whole_rows(oracle), rng=seed)
    runs, res = _time_sample(lang, schedule, length, num, seed, repeats, f"{name} fast")
    whole, res_whole = _time_sample(lang, schedule, length, num, seed, whole_row_repeats,
                                    f"{name} whole rows", _whole_rows(oracle))
    if not np.array_equal(res.tokens, res_whole.tokens):
        raise AssertionError(f"{name}: the fast and whole-row paths drew different tokens")
    best, best_whole = _best(runs), _best(whole)
    ser = sequence_error_rate(lang, res.tokens)
    return {
        "name": "sample",
        "language": f'preset("{name}")',
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
        "whole_rows_best_wall_s": best_whole,
        "whole_rows_runs": whole,
        "ratio_to_whole_rows": best_whole / best,
        "ratio_to_whole_rows_cpu": min(r["process_cpu_s"] for r in whole)
        / min(r["process_cpu_s"] for r in runs),
        "same_tokens": True,
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


def headline(row: dict) -> dict[str, float]:
    """Headline times of a history row (older rows lack (c) and the whole-row context)."""
    out = {"(a) sample 3-gram": row["sample"]["best_wall_s"],
           "(b) oracle call": row["oracle"]["ours_best_s"]}
    if "bigram" in row:
        out["(c) sample 2-gram"] = row["bigram"]["best_wall_s"]
    return out


def docs_section(report: dict) -> str:
    m, a, b, c = report["machine"], report["sample"], report["oracle"], report["bigram"]
    blocks = [*a["runs"], *a["whole_rows_runs"], b["load"], *c["runs"], *c["whole_rows_runs"]]
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
        f"| < {SAMPLE_TARGET_S:g} s (2x the {BEFORE_S:g} s before): "
        f"{_met(a['best_wall_s'] < SAMPLE_TARGET_S)} |",
        f"| (a) same call, whole-row path, same run | {a['whole_rows_best_wall_s']:.2f} s "
        f"({a['ratio_to_whole_rows']:.1f}x; process CPU {a['ratio_to_whole_rows_cpu']:.1f}x) | |",
        f"| (b) Oracle call, B = {b['batch']}, L = {b['length']} "
        f"| {b['ours_best_s'] * 1e3:.1f} ms ({b['ours_seq_per_s']:,.0f} seq/s) | |",
        f"| (b) Python-loop baseline, same batch "
        f"| {b['baseline_best_s']:.2f} s ({b['baseline_seq_per_s']:,.0f} seq/s) | |",
        f"| (b) speed ratio, best wall times (median-based {b['ratio_median']:.1f}x, "
        f"process-CPU-time {b['ratio_cpu_time']:.1f}x) | {b['ratio']:.1f}x "
        f"| >= {ORACLE_TARGET:g}x: {_met(b['target_met'])} |",
        f"| (c) `sample()` 2-gram, fast path | {c['best_wall_s']:.2f} s | |",
        f"| (c) same call, whole-row path, same run | {c['whole_rows_best_wall_s']:.2f} s | |",
        f"| (c) speed ratio (process CPU {c['ratio_to_whole_rows_cpu']:.1f}x) "
        f"| {c['ratio_to_whole_rows']:.1f}x "
        f"| >= {BIGRAM_TARGET:g}x: {_met(c['ratio_to_whole_rows'] >= BIGRAM_TARGET)} |",
    ])

    def rows(label, runs):
        return [f"| {label} run {i + 1} | {r['wall_s']:.2f} s | {r['process_cpu_s']:.2f} s "
                f"| {_load(r)} |" for i, r in enumerate(runs)]

    timing = "\n".join([
        "| Timed block | Wall | Process CPU | Load average before -> after; other processes |",
        "|---|---:|---:|---|",
        *rows("(a) fast", a["runs"]), *rows("(a) whole rows", a["whole_rows_runs"]),
        f"| (b) all repeats of both | {b['load']['wall_s']:.2f} s "
        f"| {b['load']['process_cpu_s']:.2f} s | {_load(b['load'])} |",
        *rows("(c) fast", c["runs"]), *rows("(c) whole rows", c["whole_rows_runs"]),
    ])
    return f"""## Sampler

`python benchmarks/bench_sampler.py` (raw numbers: `benchmarks/results/sampler.json`).

- **(a) `sample()`**: {a['num_samples']} sequences of length L = {a['length']} from
  `{a['language']}` (V = 8) with `{a['schedule']}` and the exact `Oracle` denoiser
  ({a['denoiser_calls']} steps; mean ddpm_cache NFE {a['mean_nfe_cache']:.1f}; SER of the
  output {a['ser']['value']:.3f}). The sampler asks the Oracle only for the positions each step
  reveals (`Oracle.marginals_at`, `mdm_exact.posterior_at`: messages jump between revealed
  tokens with powers of the n-gram's state chain; a 2-gram reads the first-order engine's
  cached powers P^k). Wall-clock time of the whole call after a
  warm-up (best of {len(a['runs'])}); for context the same call through the whole-row path
  (the Oracle wrapped as an arbitrary denoiser: a full forward-backward per row and step),
  which draws the same tokens from the same seed (checked).
- **(b) one `Oracle` call** at V = 8, L = {b['length']}, B = {b['batch']} (`{a['language']}`,
  rows sampled from the language with exactly half of each row's positions masked) against a
  plain per-position Python loop (`python_loop_oracle` in the script): for each row, scaled
  forward and backward messages with numpy vector-matrix products on the dense first-order
  HMM view `as_hmm()` (64 states), as existing oracle-sampler code (e.g. dllm_sampler) does.
  The two agree to {b['max_abs_diff']:.1e} at every position (checked <= {TOLERANCE:g}) before
  timing; best of interleaved repeats ({len(b['ours_timing']['times_s'])} each).
- **(c)** (a) for `{c['language']}`: fast path against the whole-row path in the same run
  (same tokens, checked).

Machine: {m['cpu_model']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs,
{m['platform']}; Python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}, numba
{m['numba']} ({m['numba_threads']} threads, {m['numba_threading_layer']} layer).
Run {report['timestamp']}. {load_text}
{verdict}
"Process CPU" counts every thread of this process (numba's included), so it can exceed the
wall time; the process-CPU-time ratios are the steadier comparison on a shared machine.

{summary}

{timing}
"""


# ---------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(
        argv, __doc__, "small sizes, seconds (writes sampler.quick.json, no docs update)",
        {"--samples": (1000, 100, "(a, c) sequences (default 1000, quick 100)"),
         "--length": (512, 128, "sequence length (default 512, quick 128)"),
         "--steps": (64, 16, "(a, c) linear schedule steps (default 64)"),
         "--batch": (256, 16, "(b) batch (default 256, quick 16)"),
         "--sample-repeats": (2, 1, "(a, c) timed runs of the fast path (default 2, quick 1)"),
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
    sample_result = bench_sample("3-gram", num, length, steps, args.seed, args.sample_repeats, 1)
    oracle_result = bench_oracle(batch, length, args.seed, args.repeats, args.budget)
    print(f"  (b) oracle {oracle_result['ours_best_s'] * 1e3:.1f} ms vs python loop "
          f"{oracle_result['baseline_best_s']:.2f} s: {oracle_result['ratio']:.1f}x "
          f"(max abs diff {oracle_result['max_abs_diff']:.1e})", flush=True)
    bigram_result = bench_sample("2-gram", num, length, steps, args.seed, args.sample_repeats,
                                 args.sample_repeats)

    report = {
        **report_header("sampler", argv, config, "scipy"),
        "loadavg_start": start_load,
        "loadavg_end": loadavg(),
        "sample": sample_result,
        "oracle": oracle_result,
        "bigram": bigram_result,
    }
    print(f"\n(a) sample 3-gram: {sample_result['best_wall_s']:.2f} s (target < "
          f"{SAMPLE_TARGET_S:g} s: {_met(sample_result['best_wall_s'] < SAMPLE_TARGET_S)}); "
          f"whole-row path {sample_result['whole_rows_best_wall_s']:.2f} s "
          f"({sample_result['ratio_to_whole_rows']:.1f}x, process CPU "
          f"{sample_result['ratio_to_whole_rows_cpu']:.1f}x)")
    print(f"(b) oracle speed-up: {oracle_result['ratio']:.1f}x "
          f"(target >= {ORACLE_TARGET:g}x: {_met(oracle_result['target_met'])})")
    print(f"(c) sample 2-gram: {bigram_result['best_wall_s']:.2f} s vs whole-row path "
          f"{bigram_result['whole_rows_best_wall_s']:.2f} s: "
          f"{bigram_result['ratio_to_whole_rows']:.1f}x (process CPU "
          f"{bigram_result['ratio_to_whole_rows_cpu']:.1f}x; target >= {BIGRAM_TARGET:g}x: "
          f"{_met(bigram_result['ratio_to_whole_rows'] >= BIGRAM_TARGET)})")
    print(save(report, args, docs_section, headline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
