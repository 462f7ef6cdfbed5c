"""Benchmark of the adaptive unmasking policies in the sampler (``mdm_exact.policies``).

Two measurements:

(a) ``sample()`` with a policy: 1000 sequences of length L = 512 from ``preset("3-gram")``
    (V = 8) with ``Threshold(0.9)`` and the exact ``Oracle`` denoiser; wall-clock time of the
    whole call (one batched denoiser call per step over the unfinished rows, until every row is
    revealed). Target: < 30 s on 2 cores.
(b) Context: every rule on fewer rows (default 200) at the same length, with its NFE (mean and
    5/50/95th percentiles), its SER with the Wilson interval and its wall time, so that the cost
    of a rule is read beside what it buys.

Usage::

    python benchmarks/bench_policies.py            # full run; writes results + docs section
    python benchmarks/bench_policies.py --quick    # seconds; results/policies.quick.json only

The full run writes ``benchmarks/results/policies.json`` and rewrites the "Policies" section of
``docs/benchmarks.md`` in place (appending it when absent; other sections are left alone).
"""

from __future__ import annotations

import statistics

import numba
import numpy as np
from _common import Meter, loadavg, parse_args, report_header, save

from mdm_exact import preset
from mdm_exact.metrics import sequence_error_rate
from mdm_exact.policies import EntropyBounded, Factor, RandomTopK, Threshold, TopK
from mdm_exact.sampling import sample

SAMPLE_TARGET_S = 30.0
BUSY_OTHER_CPUS = 0.25
"""Other processes using more CPU than this during a timed block mark the run as shared."""


def _context_policies(length: int) -> list:
    n = max(1, length // 8)
    return [TopK("confidence", n), TopK("margin", n), TopK("entropy", n), RandomTopK(n),
            Threshold(0.9), Threshold(0.7), EntropyBounded(1.0), Factor(1.0),
            Threshold(0.9, block_length=max(1, length // 16))]


def _run(lang, policy, length: int, num: int, seed: int) -> dict:
    with Meter() as m:
        res = sample(lang, policy, length, num, rng=np.random.default_rng(seed))
    nfe = res.nfe_per_row
    return {
        "policy": policy.name,
        "wall_s": m.wall_s,
        "meter": m.as_dict(),
        "batched_calls": int(res.nfe),
        "nfe_mean": float(nfe.mean()),
        "nfe_quantiles": {str(q): float(np.percentile(nfe, q)) for q in (5, 50, 95)},
        "ser": sequence_error_rate(lang, res.tokens).as_dict(),
    }


def bench_target(num: int, length: int, seed: int, repeats: int) -> dict:
    lang = preset("3-gram")
    policy = Threshold(0.9)
    with Meter() as warm:  # numba compile / cache load
        sample(lang, policy, 16, 8, rng=seed)
    runs = []
    for _ in range(repeats):
        run = _run(lang, policy, length, num, seed)
        runs.append(run)
        m = run["meter"]
        print(f"  (a) sample {policy.name}: {m['wall_s']:.2f} s wall, {m['process_cpu_s']:.2f} s "
              f"CPU, NFE mean {run['nfe_mean']:.1f}, load {m['loadavg_before']} -> "
              f"{m['loadavg_after']}", flush=True)
    best = min(r["wall_s"] for r in runs)
    return {
        "name": "sample with a policy",
        "language": 'preset("3-gram")',
        "policy": "Threshold(0.9)",
        "denoiser": "Oracle",
        "num_samples": num,
        "length": length,
        "best_wall_s": best,
        "median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "samples_per_s": num / best,
        "warmup_s": warm.wall_s,
        "runs": runs,
        "target_s": SAMPLE_TARGET_S,
        "target_met": bool(best < SAMPLE_TARGET_S),
    }


def bench_context(num: int, length: int, seed: int) -> list[dict]:
    lang = preset("3-gram")
    rows = []
    for policy in _context_policies(length):
        run = _run(lang, policy, length, num, seed)
        rows.append(run)
        print(f"  (b) {policy.name}: {run['wall_s']:.2f} s, NFE {run['nfe_mean']:.1f}, SER "
              f"{run['ser']['value']:.3f}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------- docs


def _met(flag: bool) -> str:
    return "met" if flag else "**missed**"


def _load(meter: dict) -> str:
    other = meter.get("other_load_cpus")
    other = "n/a" if other is None else f"{other:.2f} CPUs"
    return f"{meter.get('loadavg_before')} -> {meter.get('loadavg_after')}; other {other}"


def docs_section(report: dict) -> str:
    m, a, ctx = report["machine"], report["sample"], report["context"]
    metered = [r["meter"] for r in [*a["runs"], *ctx]]
    others = [r["other_load_cpus"] for r in metered if r.get("other_load_cpus") is not None]
    peak = max(others) if others else None
    shared = peak is not None and peak > BUSY_OTHER_CPUS
    verdict = (
        "**The machine was shared with other processes during this run**, so the wall-clock\n"
        "times are pessimistic; the process CPU times below say by how much."
        if shared else "The machine was otherwise idle during the timed blocks."
    )
    best_run = min(a["runs"], key=lambda r: r["wall_s"])
    q = best_run["nfe_quantiles"]
    summary = "\n".join([
        "| Measurement | Result | Target |",
        "|---|---:|---|",
        f"| (a) `sample()` {a['num_samples']} x {a['length']}, `{a['policy']}`, Oracle "
        f"| {a['best_wall_s']:.2f} s ({a['samples_per_s']:.0f} seq/s) "
        f"| < {SAMPLE_TARGET_S:g} s: {_met(a['target_met'])} |",
        f"| (a) NFE per row: mean (5 / 50 / 95th percentile) | {best_run['nfe_mean']:.1f} "
        f"({q['5']:.0f} / {q['50']:.0f} / {q['95']:.0f}) | |",
        f"| (a) SER of the output | {best_run['ser']['value']:.3f} "
        f"[{best_run['ser']['low']:.3f}, {best_run['ser']['high']:.3f}] | |",
    ])
    timing = "\n".join([
        "| Timed block | Wall | Process CPU | Load average before -> after; other processes |",
        "|---|---:|---:|---|",
        *[f"| (a) run {i + 1} | {r['wall_s']:.2f} s | {r['meter']['process_cpu_s']:.2f} s "
          f"| {_load(r['meter'])} |" for i, r in enumerate(a["runs"])],
    ])
    context = "\n".join([
        "| Policy | Wall | Batched calls | NFE mean | NFE 5 / 50 / 95th | SER (95% Wilson) |",
        "|---|---:|---:|---:|---|---|",
        *[f"| `{r['policy']}` | {r['wall_s']:.2f} s | {r['batched_calls']} | {r['nfe_mean']:.1f} "
          f"| {r['nfe_quantiles']['5']:.0f} / {r['nfe_quantiles']['50']:.0f} / "
          f"{r['nfe_quantiles']['95']:.0f} | {r['ser']['value']:.3f} [{r['ser']['low']:.3f}, "
          f"{r['ser']['high']:.3f}] |" for r in ctx],
    ])
    num_ctx = report["config"]["context_samples"]
    return f"""## Policies

`python benchmarks/bench_policies.py` (raw numbers: `benchmarks/results/policies.json`).

- **(a) `sample()` with an adaptive policy**: {a['num_samples']} sequences of length
  L = {a['length']} from `{a['language']}` (V = 8) with `{a['policy']}` and the exact `Oracle`
  denoiser: every unfinished row calls the denoiser once per step (one batched call over those
  rows) until all its positions are revealed. Wall-clock time of the whole call after a numba
  warm-up (best of {len(a['runs'])}).
- **(b) every rule** on {num_ctx} rows of the same language and length (one run each): NFE per
  row is the number of denoiser calls the row needed, "batched calls" the calls the sampler made.

Machine: {m['cpu_model']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs,
{m['platform']}; Python {m['python']}, numpy {m['numpy']}, numba {m['numba']}
({m['numba_threads']} threads, {m['numba_threading_layer']} layer).
Run {report['timestamp']}; load average {report.get('loadavg_start')} at the start,
{report.get('loadavg_end')} at the end. {verdict}

{summary}

{timing}

{context}
"""


# ---------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(
        argv, __doc__, "small sizes, seconds (writes policies.quick.json, no docs update)",
        {"--samples": (1000, 50, "(a) sequences (default 1000, quick 50)"),
         "--length": (512, 64, "sequence length (default 512, quick 64)"),
         "--context-samples": (200, 20, "(b) sequences per rule (default 200, quick 20)"),
         "--sample-repeats": (2, 1, "(a) timed runs (default 2, quick 1)")},
        "unused (kept for the common command line)",
    )
    num, length = args.samples, args.length
    config = {"samples": num, "length": length, "context_samples": args.context_samples,
              "sample_repeats": args.sample_repeats, "seed": args.seed, "quick": args.quick}
    start_load = loadavg()
    print(f"bench_policies: samples={num} L={length} threads={numba.get_num_threads()} "
          f"loadavg={start_load}", flush=True)
    target = bench_target(num, length, args.seed, args.sample_repeats)
    context = bench_context(args.context_samples, length, args.seed)
    report = {
        **report_header("policies", argv, config),
        "loadavg_start": start_load,
        "loadavg_end": loadavg(),
        "sample": target,
        "context": context,
    }
    wrote = save(report, args, docs_section,
                 lambda row: {"(a) sample": row["sample"]["best_wall_s"]})
    print(f"\n(a) sample: {target['best_wall_s']:.2f} s "
          f"(target < {SAMPLE_TARGET_S:g} s: {_met(target['target_met'])})")
    print(wrote)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
