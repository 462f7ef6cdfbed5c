"""Benchmark of the exact masked posterior (``mdm_exact.posterior_marginals``), issue 16.

Every comparison is checked for identical results (max abs diff <= 1e-12 at the masked
positions) before it is timed, and names the engine that ran (``implementation="auto"``
dispatch, ``mdm_exact.posterior.IMPLEMENTATIONS``). Targets, as ratios measured in one run:

1. ``preset("hmm")`` (K = 32 states, V = 8) against hmmlearn's scaling forward-backward: a
   ``CategoricalHMM`` subclass (``implementation="scaling"``) whose ``_compute_likelihood`` is 1 at
   masked positions and ``B[:, x]`` elsewhere, run sequence by sequence through
   ``score_samples`` as a user would; its hidden-state posteriors become token marginals
   ``posteriors @ emission`` at masked positions. Target: >= 15x hmmlearn's throughput, and
   useful GFLOP/s >= 40% of numpy's DGEMM (2048 x 2048, best of 3) measured in this process.
   Useful flops: 2 K^2 per row and position forward, as many backward, and 2 K V per masked
   position for the marginals (B L 4 K^2 + 2 K V x masked cells).
2. ``preset("2-gram")`` (first-order engine: nearest revealed neighbours and cached powers)
   against hmmlearn on the same chain (``lang.as_hmm()``, V states). Target: >= 25x.
3. ``preset("3-gram")`` and ``preset("4-gram")``: >= 1.5x the throughput of the comparison row:
   the last ``--release`` row of ``benchmarks/results/posterior.json`` measured on the same
   machine with the same sizes, else the oldest row (the measurement before issue 16).

Context rows (not judged): ours on one thread; the blocked HMM engine against the per-row dense
kernel it replaces and the 2-gram's first-order engine against the n-gram kernel, both in the
same run; each n-gram's structured chain against its dense HMM view (``lang.as_hmm()``,
``implementation="dense"``) and, for the 4-gram, against that view as ``auto`` dispatches it.

Inputs: B rows sampled from the language (seeded), exactly half of each row's positions masked
(seeded random permutation). Numba kernels are compiled (warm-up) before timing; each timing is
the best of a few ``time.perf_counter`` repeats, interleaved between contenders (the median and
the process CPU time are stored in the JSON as well). Throughput is sequences per second. The CPU
time other processes used meanwhile is recorded too: on a shared machine it says how far to
trust a run.

Usage::

    python benchmarks/bench_posterior.py            # B=256, L=512; appends to the history + docs
    python benchmarks/bench_posterior.py --quick    # B=16, L=128, seconds; results/*.quick.json

The full run appends a row to ``benchmarks/results/posterior.json`` and regenerates the
"Posterior" section of ``docs/benchmarks.md``; ``--quick`` writes
``benchmarks/results/posterior.quick.json`` and leaves the docs alone.
"""

from __future__ import annotations

import contextlib
import sys
import time

import numba
import numpy as np
from _common import (
    RESULTS,
    Meter,
    load_history,
    loadavg,
    masked_sample,
    package_version,
    parse_args,
    release_row,
    report_header,
    save,
    timed,
)

import mdm_exact

TOLERANCE = 1e-12
HMM_TARGET = 15.0
DGEMM_SHARE_TARGET = 0.40
FIRST_ORDER_TARGET = 25.0
NGRAM_TARGET = 1.5
HEADLINES = {
    # this script's row names, and those of the rows before issue 16
    "HMM vs hmmlearn": "hmm", "2-gram vs hmmlearn": "2-gram",
    "3-gram vs comparison row": "3-gram", "4-gram vs comparison row": "4-gram",
    "2-gram structured vs dense HMM view": "2-gram",
    "3-gram structured vs dense HMM view": "3-gram",
    "4-gram structured vs dense HMM view": "4-gram",
}

# ----------------------------------------------------------------------------------- helpers


def masked_max_diff(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(np.max(np.abs(a[mask] - b[mask]))) if mask.any() else 0.0


def engine(lang, x, implementation: str = "auto") -> str:
    """The engine ``implementation`` runs on these rows (the engine module's own dispatch)."""
    from mdm_exact.posterior import _arrays_of, _resolve, _thread_cap

    return _resolve(_arrays_of(lang), implementation, x, _thread_cap(numba.get_num_threads()))


def engine_threads(work: int) -> int:
    """Threads the engine really uses for ``work`` (position x state) updates."""
    from mdm_exact.posterior import _threads_for

    with _threads_for(work) as threads:
        return threads


@contextlib.contextmanager
def numba_threads(n: int):
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def dgemm_gflops(n: int = 2048, repeats: int = 3) -> float:
    """numpy's DGEMM (n x n) @ (n x n), best of ``repeats``, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n)), rng.random((n, n))
    a @ b
    best = min(_wall(lambda: a @ b) for _ in range(repeats))
    return 2.0 * n**3 / best / 1e9


def _wall(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def row(name, kind, ours, base, batch, diff, target, ours_label, base_label, **extra) -> dict:
    ours_tp = batch / ours["best_s"]
    base_tp = batch / base["best_s"]
    ratio = ours_tp / base_tp
    return {
        "name": name,
        "kind": kind,  # "target" rows are judged, "context" rows are not
        "headline": HEADLINES.get(name) if kind == "target" else None,
        "ours": ours_label,
        "baseline": base_label,
        "ours_seq_per_s": ours_tp,
        "baseline_seq_per_s": base_tp,
        "ratio": ratio,
        "ratio_median": base["median_s"] / ours["median_s"],
        # Process CPU time (all threads): load-robust for single-threaded contenders.
        "ratio_cpu_time": min(base["process_cpu_s"]) / min(ours["process_cpu_s"]),
        "target_ratio": target,
        "target_met": None if target is None else bool(ratio >= target),
        "max_abs_diff": diff,
        "identical_within_tol": bool(diff <= TOLERANCE),
        "ours_timing": ours,
        "baseline_timing": base,
        **extra,
    }


# --------------------------------------------------------------------------- hmmlearn baseline


def make_hmmlearn_model(lang):
    from hmmlearn import hmm

    class MaskedCategoricalHMM(hmm.CategoricalHMM):
        """Categorical HMM whose observation likelihood is 1 at masked positions (x = -1)."""

        def _compute_likelihood(self, X):
            tokens = X[:, 0]
            out = np.ones((tokens.shape[0], self.n_components))
            seen = tokens >= 0
            out[seen] = self.emissionprob_[:, tokens[seen]].T
            return out

    model = MaskedCategoricalHMM(
        n_components=lang.num_states, n_features=lang.vocab_size, implementation="scaling"
    )
    model.startprob_ = np.array(lang.initial)
    model.transmat_ = np.array(lang.transition)
    model.emissionprob_ = np.array(lang.emission)
    return model


def hmmlearn_marginals(model, emission: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Token marginals from hmmlearn's per-sequence state posteriors (one-hot where revealed)."""
    batch, length = x.shape
    vocab = emission.shape[1]
    out = np.empty((batch, length, vocab))
    eye = np.eye(vocab)
    for b in range(batch):
        seq = x[b]
        _, post = model.score_samples(seq[:, None])
        out[b] = post @ emission
        seen = seq >= 0
        out[b, seen] = eye[seq[seen]]
    return out


HMMLEARN_LABEL = "hmmlearn {} CategoricalHMM scaling, score_samples loop"


# ------------------------------------------------------------------------------ benchmarks


def bench_hmm(batch, length, seed, repeats, budget) -> list[dict]:
    lang = mdm_exact.preset("hmm")
    x = masked_sample(lang, batch, length, seed)
    mask = x < 0
    model = make_hmmlearn_model(lang)
    emission = np.array(lang.emission)
    k, v = lang.num_states, lang.vocab_size

    def ours():
        return mdm_exact.posterior_marginals(lang, x)

    def ours_1t():
        with numba_threads(1):
            return ours()

    def old():
        return mdm_exact.posterior_marginals(lang, x, implementation="dense")

    def theirs():
        return hmmlearn_marginals(model, emission, x)

    for fn in (ours, ours_1t, old):  # JIT compile / load the numba cache
        fn()
    ref = ours()
    diff = masked_max_diff(ref, theirs(), mask)
    diff_old = masked_max_diff(ref, old(), mask)
    kernel = engine(lang, x)
    threads = engine_threads(batch * length * k)
    t = timed({"hmmlearn": theirs, "ours": ours, "ours_1t": ours_1t, "old": old}, repeats,
              budget)
    dgemm = dgemm_gflops()
    flops = batch * length * 4.0 * k * k + 2.0 * k * v * float(mask.sum())
    useful = flops / t["ours"]["best_s"] / 1e9
    share = useful / dgemm
    desc = f"preset('hmm') K={k} V={v}"
    base_label = HMMLEARN_LABEL.format(package_version("hmmlearn"))
    plural = "s" * (threads > 1)
    return [
        row("HMM vs hmmlearn", "target", t["ours"], t["hmmlearn"], batch, diff, HMM_TARGET,
            f"mdm_exact ({kernel} engine), {threads} thread{plural}", base_label,
            language=desc, engine=kernel, threads=threads, useful_gflop=flops / 1e9,
            useful_gflop_per_s=useful, dgemm_gflop_per_s=dgemm, dgemm_share=share,
            dgemm_share_target=DGEMM_SHARE_TARGET,
            dgemm_share_met=bool(share >= DGEMM_SHARE_TARGET)),
        row("HMM vs hmmlearn (1 thread)", "context", t["ours_1t"], t["hmmlearn"], batch, diff,
            None, f"mdm_exact ({kernel} engine), 1 thread", base_label, language=desc,
            engine=kernel, threads=1),
        row("HMM blocked vs per-row dense kernel", "context", t["ours"], t["old"], batch,
            diff_old, None, f"mdm_exact ({kernel} engine), {threads} thread{plural}",
            f"mdm_exact implementation='dense' (per-row kernel), {threads} thread{plural}",
            language=desc, engine=kernel, threads=threads),
    ]


def bench_first_order(batch, length, seed, repeats, budget) -> list[dict]:
    lang = mdm_exact.preset("2-gram")
    x = masked_sample(lang, batch, length, seed)
    mask = x < 0
    view = lang.as_hmm()
    model = make_hmmlearn_model(view)
    emission = np.array(view.emission)

    def ours():
        return mdm_exact.posterior_marginals(lang, x)

    def old():
        return mdm_exact.posterior_marginals(lang, x, implementation="sparse")

    def theirs():
        return hmmlearn_marginals(model, emission, x)

    for fn in (ours, old):
        fn()
    ref = ours()
    diff = masked_max_diff(ref, theirs(), mask)
    diff_old = masked_max_diff(ref, old(), mask)
    kernel = engine(lang, x)
    threads = engine_threads(batch * length * lang.vocab_size)
    t = timed({"hmmlearn": theirs, "ours": ours, "old": old}, repeats, budget)
    desc = f"preset('2-gram') V={lang.vocab_size}"
    plural = "s" * (threads > 1)
    return [
        row("2-gram vs hmmlearn", "target", t["ours"], t["hmmlearn"], batch, diff,
            FIRST_ORDER_TARGET, f"mdm_exact ({kernel} engine), {threads} thread{plural}",
            HMMLEARN_LABEL.format(package_version("hmmlearn")) + " on as_hmm()",
            language=desc, engine=kernel, threads=threads),
        row("2-gram first-order vs n-gram kernel", "context", t["ours"], t["old"], batch,
            diff_old, None, f"mdm_exact ({kernel} engine)",
            "mdm_exact implementation='sparse' (n-gram kernel)", language=desc, engine=kernel),
    ]


def bench_ngram(order, batch, length, seed, repeats, budget, comparison) -> list[dict]:
    name = f"{order}-gram"
    lang = mdm_exact.preset(name)
    x = masked_sample(lang, batch, length, seed)
    mask = x < 0
    view = lang.as_hmm()
    states = view.num_states
    nnz = float((view.transition > 0).mean())

    def ours(rows=x):
        return mdm_exact.posterior_marginals(lang, rows)

    def dense(rows=x):
        return mdm_exact.posterior_marginals(view, rows, implementation="dense")

    def auto(rows=x):  # the HMM view as the engine dispatches it by itself
        return mdm_exact.posterior_marginals(view, rows)

    for fn in (ours, dense, auto):  # JIT compile / load the numba cache; build the chains
        fn(x[:2])
    ref = ours()
    diff_dense = masked_max_diff(ref, dense(), mask)
    diff_auto = masked_max_diff(ref, auto(), mask)
    fns = {"ours": ours, "dense": dense}
    if order == 4:
        fns["auto"] = auto
    t = timed(fns, repeats, budget)
    kernel = engine(lang, x)
    desc = f"preset('{name}') V={lang.vocab_size}, {states} chain states"
    ours_label = f"mdm_exact n-gram ({kernel} engine)"
    rows = []
    old = comparison_timing(comparison, f"{name}")
    if old is not None:
        rows.append(row(
            f"{name} vs comparison row", "target", t["ours"], old, batch, 0.0, NGRAM_TARGET,
            ours_label, f"mdm_exact n-gram as stored in the row of {comparison['timestamp']}",
            language=desc, engine=kernel))
    rows.append(row(
        f"{name} structured vs dense HMM view", "context", t["ours"], t["dense"], batch,
        diff_dense, None, ours_label,
        f"mdm_exact on as_hmm(), implementation='dense' ({states} states, {nnz:.1%} non-zero)",
        language=desc, states=states, transition_nonzero_fraction=nnz, engine=kernel))
    if order == 4:
        rows.append(row(
            f"{name} structured vs as_hmm() as dispatched", "context", t["ours"], t["auto"],
            batch, diff_auto, None, ours_label,
            f"mdm_exact on as_hmm(), implementation='auto' ({engine(view, x)} engine)",
            language=desc, states=states, transition_nonzero_fraction=nnz, engine=kernel,
        ))
    return rows


# --------------------------------------------------------------------------- comparison row


def headline(report: dict) -> dict[str, float]:
    """Best seconds of our side of each target, keyed by language (old row names included)."""
    out = {}
    for r in report["results"]:
        key = r.get("headline") or HEADLINES.get(r["name"])
        if key and key not in out:
            out[key] = r["ours_timing"]["best_s"]
    return out


def comparison_row(config: dict, path=RESULTS / "posterior.json") -> dict | None:
    """The row the n-gram targets compare with: the last release row measured on this machine
    with these sizes, else the oldest row of the history with these sizes."""
    probe = {**report_header("posterior", [], config, "hmmlearn")}
    rows = load_history(path)
    found = release_row(rows, probe)
    if found is not None:
        return found
    sizes = ("batch", "length", "masked_fraction")
    same = [r for r in rows if all(r["config"].get(k) == config[k] for k in sizes)]
    return same[0] if same else None


def comparison_timing(comparison: dict | None, language: str) -> dict | None:
    if comparison is None:
        return None
    for r in comparison["results"]:
        if (r.get("headline") or HEADLINES.get(r["name"])) == language:
            return r["ours_timing"]
    return None


# -------------------------------------------------------------------------------- reporting


def _fmt_tp(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def _fmt_target(r: dict) -> str:
    if r["target_ratio"] is None:
        return "(context)"
    return f">= {r['target_ratio']:g}x: {'met' if r['target_met'] else '**missed**'}"


def _fmt_load(v) -> str:
    return "n/a" if v is None else f"{v:.2f} CPUs"


def markdown_table(results: list[dict]) -> str:
    lines = [
        "| Comparison | Ours (seq/s) | Baseline (seq/s) | Ratio | CPU-time ratio | Max abs diff "
        "| Target | Other load |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['name']}<br>ours: {r['ours']}<br>baseline: {r['baseline']} "
            f"| {_fmt_tp(r['ours_seq_per_s'])} | {_fmt_tp(r['baseline_seq_per_s'])} "
            f"| {r['ratio']:.2f}x | {r['ratio_cpu_time']:.2f}x | {r['max_abs_diff']:.1e} "
            f"| {_fmt_target(r)} "
            f"| {_fmt_load(r.get('other_load_cpus'))} |"
        )
    return "\n".join(lines)


def gflops_line(results: list[dict]) -> str:
    r = next(r for r in results if r["name"] == "HMM vs hmmlearn")
    met = "met" if r["dgemm_share_met"] else "**missed**"
    ms = r["ours_timing"]["best_s"] * 1e3
    return (f"HMM useful arithmetic: {r['useful_gflop']:.3g} GFLOP in {ms:.1f} ms = "
            f"{r['useful_gflop_per_s']:.1f} GFLOP/s, {r['dgemm_share']:.0%} of numpy DGEMM "
            f"(2048 x 2048) at {r['dgemm_gflop_per_s']:.1f} GFLOP/s in the same process "
            f"(target >= {DGEMM_SHARE_TARGET:.0%}: {met}).")


def docs_section(report: dict) -> str:
    m, c = report["machine"], report["config"]
    comp = report.get("comparison_row")
    comp_text = ("none (no earlier row with these sizes)" if comp is None else
                 f"the row of {comp['timestamp']}" + (f" (release {comp['release']})"
                                                      if comp.get("release") else ""))
    return f"""## Posterior

`python benchmarks/bench_posterior.py` (raw numbers: `benchmarks/results/posterior.json`).
Throughput of `posterior_marginals` in sequences per second on B = {c['batch']} sequences of
length L = {c['length']}, sampled from each language (seed {c['seed']}) with exactly half of each
row's positions masked. Each number is the best of up to {c['repeats']} `time.perf_counter`
repeats after a numba warm-up; every comparison is first checked for identical token marginals
at the masked positions (max abs diff <= {TOLERANCE:g}). "ours" names the engine the default
`implementation="auto"` ran (see `mdm_exact.posterior.IMPLEMENTATIONS`).

- **HMM vs hmmlearn**: `preset("hmm")` (K = 32, V = 8) against a `hmmlearn.hmm.CategoricalHMM`
  subclass (`implementation="scaling"`) whose `_compute_likelihood` is 1 at masked positions,
  called once per sequence through `score_samples`; its state posteriors times the emission
  matrix give the token marginals. hmmlearn is single-threaded, so the 1-thread row is the
  per-core comparison. Useful flops: 4 K^2 per row and position (forward and backward) and
  2 K V per masked position.
- **2-gram vs hmmlearn**: the first-order engine (nearest revealed neighbours, cached powers
  P^k) against hmmlearn on the same chain as an HMM (`lang.as_hmm()`).
- **n-gram vs comparison row**: our throughput now against the one stored in {comp_text}.
- Context: the engines replaced (per-row dense kernel, n-gram kernel) in the same run; each
  n-gram's structured chain against its dense HMM view `lang.as_hmm()`.

Machine: {m['cpu_model']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs,
{m['platform']}; Python {m['python']}, numpy {m['numpy']}, numba {m['numba']} ({m['numba_threads']}
threads, {m['numba_threading_layer']} layer), hmmlearn {m['hmmlearn']}. Run {report['timestamp']}.
"Ratio" is the ratio of wall-clock throughputs (the target is judged on it); "CPU-time ratio"
compares the process CPU time of the best repeats instead, which barely moves with background
load when both contenders run one thread (hmmlearn does), but counts numba's idle spinning when
they do not. "Other load" is the CPU time other processes used while that comparison ran (from
`/proc/stat` minus this process; {_fmt_load(report.get('other_load_cpus_before_run'))} just
before the run, load average {report.get('loadavg_start')}): anything well above 0 means the
wall-clock timings were taken on a busy machine.

{gflops_line(report['results'])}

{markdown_table(report['results'])}
"""


# -------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(
        argv, __doc__, "B=16, L=128: a smoke run in seconds (no docs update)",
        {"--batch": (256, 16, "sequences (default 256, quick 16)"),
         "--length": (512, 128, "sequence length (default 512, quick 128)"),
         "--repeats": (5, 3, "timed repeats (default 5, quick 3)")},
        "stop repeating a timing after this many seconds (>= 2 runs)",
    )
    batch, length, repeats = args.batch, args.length, args.repeats
    config = {"batch": batch, "length": length, "masked_fraction": 0.5, "seed": args.seed,
              "repeats": repeats, "budget_s": args.budget, "quick": args.quick,
              "tolerance": TOLERANCE, "timing": "best of repeats (median also stored)"}
    comparison = comparison_row(config, args.output or RESULTS / "posterior.json")

    print(f"bench_posterior: B={batch} L={length} threads={numba.get_num_threads()}", flush=True)
    start_load = loadavg()
    with Meter() as idle:
        time.sleep(1.0)
    if idle.other_cpus is not None:
        print(f"  other processes were using {idle.other_cpus:.2f} CPUs before the run", flush=True)
    results = []
    t0 = time.perf_counter()
    jobs = [("hmm", lambda: bench_hmm(batch, length, args.seed, repeats, args.budget)),
            ("2-gram", lambda: bench_first_order(batch, length, args.seed, repeats, args.budget))]
    jobs += [(f"{n}-gram", lambda n=n: bench_ngram(n, batch, length, args.seed, repeats,
                                                    args.budget, comparison)) for n in (3, 4)]
    for label, job in jobs:
        with Meter() as load:
            rows = job()
        for r in rows:
            r["other_load_cpus"] = load.other_cpus
        results += rows
        other = "" if load.other_cpus is None else f", other load {load.other_cpus:.2f} CPUs"
        print(f"  {label} done ({time.perf_counter() - t0:.0f} s{other})", flush=True)

    report = {
        **report_header("posterior", argv, config, "hmmlearn"),
        "loadavg_start": start_load,
        "other_load_cpus_before_run": idle.other_cpus,
        "comparison_row": None if comparison is None else {
            k: comparison.get(k) for k in ("timestamp", "release", "revision")},
        "results": results,
    }
    wrote = save(report, args, docs_section, headline)

    print()
    print(markdown_table(results))
    print()
    print(gflops_line(results))
    print("\n" + wrote)
    bad = [r["name"] for r in results if not r["identical_within_tol"]]
    missed = [r["name"] for r in results if r["target_met"] is False]
    missed += [f"{r['name']} (GFLOP/s share)" for r in results
               if r.get("dgemm_share_met") is False]
    if missed:
        print("target missed: " + ", ".join(missed))
    if bad:
        print(f"RESULTS DIFFER by more than {TOLERANCE:g}: " + ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
