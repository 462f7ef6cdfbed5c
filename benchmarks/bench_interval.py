"""Benchmark of the exact interval engine of Example C.7 (``mdm_exact.theory.interval``).

Two measurements, each the best of a few ``time.perf_counter`` repeats after a numba warm-up:

(a) ``oracle_ser(Schedule.cosine(100_000), 5, 1_000_000)``: the exact SER of the oracle at
    L = 10^6 with N = 10^5 distinct masses, O(N l^2). Target: < 0.5 s (the time the unit test
    used to assert before timing left the test suite).
(b) Context: ``oracle_ser_family("linear", N, 5, L)`` at N = 10^6, 10^12 and 10^15 equal
    steps, O(l^2 log N), and ``interval_valid_probability`` of one interval of l = 200 under
    ``Schedule.cosine(1000)``, O(N l^2).

Usage::

    python benchmarks/bench_interval.py            # full run; writes results + docs section
    python benchmarks/bench_interval.py --quick    # seconds; results/interval.quick.json only

The full run writes ``benchmarks/results/interval.json`` and rewrites the "Interval engine"
section of ``docs/benchmarks.md`` in place (appending it when absent; other sections are left
alone).
"""

from __future__ import annotations

import numba
from _common import Meter, loadavg, parse_args, report_header, save, timed

from mdm_exact.schedules import Schedule
from mdm_exact.theory.interval import interval_valid_probability, oracle_ser, oracle_ser_family

TARGET_S = 0.5
LINEAR_STEPS = (10**6, 10**12, 10**15)


def bench_target(num_steps: int, length: int, repeats: int, budget_s: float) -> dict:
    schedule = Schedule.cosine(num_steps)
    with Meter() as warm:  # numba compile / cache load
        oracle_ser(Schedule.cosine(8), 5, 10)
    result = timed({"oracle_ser": lambda: oracle_ser(schedule, 5, length)}, repeats, budget_s)
    best = result["oracle_ser"]["best_s"]
    print(f"  (a) oracle_ser cosine N={num_steps} L={length}: best {best:.3f} s "
          f"(warm-up {warm.wall_s:.2f} s)", flush=True)
    return {"name": "oracle_ser, cosine schedule", "num_steps": num_steps, "interval": 5,
            "length": length, "ser": oracle_ser(schedule, 5, length), "warmup_s": warm.wall_s,
            **result["oracle_ser"], "target_s": TARGET_S, "target_met": bool(best < TARGET_S)}


def bench_context(length: int, repeats: int, budget_s: float) -> list[dict]:
    fns = {f"linear N={n:.0e}": (lambda n=n: oracle_ser_family("linear", n, 5, length))
           for n in LINEAR_STEPS}
    cosine = Schedule.cosine(1000)
    fns["interval_valid_probability l=200, cosine N=1000"] = (
        lambda: interval_valid_probability(cosine, 200))
    rows = []
    for name, res in timed(fns, repeats, budget_s).items():
        rows.append({"name": name, **res})
        print(f"  (b) {name}: best {res['best_s'] * 1e3:.2f} ms", flush=True)
    return rows


def _met(flag: bool) -> str:
    return "met" if flag else "**missed**"


def docs_section(report: dict) -> str:
    m, a = report["machine"], report["target"]
    rows = "\n".join(f"| {r['name']} | {r['best_s'] * 1e3:.2f} ms | {r['median_s'] * 1e3:.2f} ms |"
                     for r in report["context"])
    return f"""## Interval engine

`python benchmarks/bench_interval.py` (raw numbers: `benchmarks/results/interval.json`).
Exact SER of Example C.7 by the factorial-free multinomial merge of
`mdm_exact.theory.interval`; best of up to {report['config']['repeats']} repeats after a numba
warm-up.

Machine: {m['cpu_model']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs,
{m['platform']}; Python {m['python']}, numpy {m['numpy']}, numba {m['numba']}.
Run {report['timestamp']}; load average {report.get('loadavg_start')} at the start,
{report.get('loadavg_end')} at the end.

| Measurement | Result | Target |
|---|---:|---|
| (a) `oracle_ser(Schedule.cosine({a['num_steps']}), 5, {a['length']})` (SER {a['ser']:.4f}) \
| {a['best_s']:.3f} s | < {TARGET_S:g} s: {_met(a['target_met'])} |

| (b) Context | Best | Median |
|---|---:|---:|
{rows}
"""


def main(argv=None) -> int:
    args = parse_args(
        argv, __doc__, "small sizes, seconds (writes interval.quick.json, no docs update)",
        {"--steps": (100_000, 10_000, "(a) cosine steps N (default 100000, quick 10000)"),
         "--length": (1_000_000, 100_000, "(a, b) sequence length (default 1e6, quick 1e5)"),
         "--repeats": (5, 2, "timed repeats (default 5, quick 2)")},
        "seconds after which the repeats stop (at least two are run)",
    )
    config = {"steps": args.steps, "length": args.length, "repeats": args.repeats,
              "budget_s": args.budget, "quick": args.quick}
    start_load = loadavg()
    print(f"bench_interval: N={args.steps} L={args.length} threads={numba.get_num_threads()} "
          f"loadavg={start_load}", flush=True)
    target = bench_target(args.steps, args.length, args.repeats, args.budget)
    context = bench_context(args.length, args.repeats, args.budget)
    report = {**report_header("interval", argv, config), "loadavg_start": start_load,
              "loadavg_end": loadavg(), "target": target, "context": context}
    wrote = save(report, args, docs_section,
                 lambda row: {"(a) oracle_ser": row["target"]["best_s"]})
    print(f"\n(a) oracle_ser: {target['best_s']:.3f} s (target < {TARGET_S:g} s: "
          f"{_met(target['target_met'])})")
    print(wrote)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
