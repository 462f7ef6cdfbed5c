"""The ``mdm-exact`` command line (``python -m mdm_exact`` is the same).

Verbs: ``language`` (generate / inspect / save a language), ``exact`` (exact metrics at small L),
``simulate`` (Monte-Carlo metrics at any L), ``ser`` (exact Example C.7 SER), ``bound`` (Lemma
B.12's schedule and Theorem 4.2's guarantee), ``steps`` (smallest N for a target), ``verify``
(every statement checked), ``train`` / ``evaluate`` (torch extra), ``figure`` (plots).

Bad arguments exit with status 2 and one line on stderr, ``mdm-exact: error: ...``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

import numpy as np

from . import __version__
from ._utils import first_true
from .errors import ArgumentError, ArgumentTypeError
from .estimate import Estimate
from .languages import PRESETS, Language, load_language, preset
from .schedules import FixedCountPlan, Schedule

SCHEDULE_HELP = "linear, cosine, loglinear[:EPS] or polynomial:A"


def _print_json(data) -> None:
    def default(obj):
        if isinstance(obj, Estimate):
            return obj.as_dict()
        if isinstance(obj, np.integer | np.floating):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        raise ArgumentTypeError(f"not JSON serialisable: {type(obj).__name__}")

    text = json.dumps(data, indent=2, default=default, allow_nan=True)
    print(text.replace("Infinity", '"inf"').replace("NaN", '"nan"'))


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _add_language_source(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--language", metavar="FILE", help="a language saved as .json or .npz")
    group.add_argument("--preset", choices=sorted(PRESETS), help="a Table 1 language")
    parser.add_argument("--threshold", type=float, default=None,
                        help="with --preset: pruning threshold (0 = the unpruned TER variant)")
    parser.add_argument("--language-seed", type=int, default=0,
                        help="with --preset: seed of the random tables (default 0)")


def _language(args) -> Language:
    if args.language:
        return load_language(args.language)
    return preset(args.preset, threshold=args.threshold, seed=args.language_seed)


# ------------------------------------------------------------------------------ language


def _cmd_language(args) -> int:
    lang = _language(args)
    if args.save:
        lang.save(args.save)
    info: dict = {"kind": lang.kind, "vocab_size": lang.vocab_size, "metadata": lang.metadata}
    if hasattr(lang, "order"):
        info["order"] = lang.order
    if hasattr(lang, "num_states"):
        info["num_states"] = lang.num_states
    if hasattr(lang, "interval"):
        info["interval"] = lang.interval
    if args.length:
        ent = lang.entropy(args.length, seed=args.seed)
        info["entropy_per_token"] = ent.scaled(1 / args.length)
    if args.sample:
        if not args.length:
            raise ArgumentError("--sample needs --length")
        info["samples"] = lang.sample(args.sample, args.length, args.seed).tolist()
    if args.json:
        _print_json(info)
        return 0
    print(f"{lang!r}")
    for key, value in info.items():
        if key == "samples":
            print("samples:")
            for row in value:
                print("  " + " ".join(str(t) for t in row))
        elif key == "metadata":
            print("metadata:")
            for mk, mv in value.items():
                print(f"  {mk}: {mv}")
        else:
            print(f"{key}: {value}")
    if args.save:
        print(f"saved to {args.save}")
    return 0


def _add_language(sub) -> None:
    p = sub.add_parser("language", help="generate, inspect and save a language",
                       description="Generate (Table 1 presets, Algorithms 1 and 2), inspect and "
                                   "save a language as JSON or .npz.")
    _add_language_source(p)
    p.add_argument("--show", action="store_true", help="print the summary (the default)")
    p.add_argument("--length", type=int, default=0, help="report the entropy per token at L")
    p.add_argument("--sample", type=int, default=0, metavar="NUM", help="print NUM samples")
    p.add_argument("--seed", type=int, default=0, help="seed of samples / Monte-Carlo entropy")
    p.add_argument("--save", metavar="FILE", help="write the language to FILE (.json / .npz)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_language)


# ------------------------------------------------------------------------------ exact / simulate


def _plan(args, length: int):
    chosen = [args.alphas is not None, args.fixed_count is not None, args.steps is not None]
    if sum(chosen) != 1:
        raise ArgumentError("give exactly one of --steps N (with --schedule), --alphas, "
                         "--fixed-count N")
    if args.alphas is not None:
        try:
            grid = [float(a) for a in args.alphas.split(",")]
        except ValueError:
            raise ArgumentError(f"--alphas must be comma-separated numbers, got {args.alphas!r}")\
                from None
        return Schedule.from_alpha(grid)
    if args.fixed_count is not None:
        return FixedCountPlan.even(length, args.fixed_count)
    return Schedule.named(args.schedule, args.steps)


def _denoiser(args, lang):
    from .sampling import PerturbedOracle

    if args.eps_learning is None:
        return None
    return PerturbedOracle(lang, args.eps_learning)


def _cmd_exact(args) -> int:
    from .exact import exact_metrics

    lang = _language(args)
    plan = _plan(args, args.length)
    m = exact_metrics(lang, plan, args.length, _denoiser(args, lang))
    data = {**m.as_dict(), "plan": repr(plan), "language": repr(lang)}
    if args.json:
        _print_json(data)
        return 0
    print(f"{lang!r}, L = {args.length}, {plan!r}")
    rows = [("quantity", "value", "meaning"),
            ("kl", f"{m.kl:.10g}", "KL(q || p), nats per sequence"),
            ("log_ter", f"{m.log_ter:.10g}", "eq. 4, nats per token (optimum log_ter_q)"),
            ("log_ter_q", f"{m.log_ter_q:.10g}", "H(q) / L"),
            ("gen_log_ppl", f"{m.gen_log_ppl:.10g}", "E_p[-log q] / L, nats per token"),
            ("ser", f"{m.ser:.10g}", "eq. 5, 1 - p(supp q)"),
            ("jensen_bound", f"{m.jensen_bound:.10g}", "E_tau KL(q || p_tau) (Lemma B.2)"),
            ("gap", f"{m.gap:.10g}", "jensen_bound - kl"),
            ("entropy", f"{m.entropy:.10g}", "H(q), nats per sequence")]
    print(_table(rows))
    return 0


def _add_plan_arguments(p) -> None:
    p.add_argument("--steps", type=int, help="number of steps N of a schedule family")
    p.add_argument("--schedule", default="linear", help=f"family: {SCHEDULE_HELP}")
    p.add_argument("--alphas", help="alpha grid a0,...,aN on t_i = i/N (a0 = 1)")
    p.add_argument("--fixed-count", type=int, metavar="N",
                   help="reveal L/N positions per step (fixed-count plan)")
    p.add_argument("--eps-learning", type=float, default=None,
                   help="use a PerturbedOracle with this KL per masked position (nats)")


def _add_exact(sub) -> None:
    p = sub.add_parser("exact", help="exact KL / TER / SER at small L",
                       description="The exact output distribution of factorized parallel "
                                   "unmasking and its metrics (small L only).")
    _add_language_source(p)
    p.add_argument("--length", type=int, required=True, help="sequence length L")
    _add_plan_arguments(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_exact)


def _cmd_simulate(args) -> int:
    from .metrics import generative_log_perplexity, jensen_bound, sequence_error_rate
    from .sampling import sample

    lang = _language(args)
    plan = _plan(args, args.length)
    den = _denoiser(args, lang)
    rng = np.random.default_rng(args.seed)
    res = sample(lang, plan, args.length, args.samples, den, rng, progress=True)
    ser = sequence_error_rate(lang, res.tokens)
    gen = generative_log_perplexity(lang, res.tokens)
    jb = jensen_bound(lang, plan, args.length, max(2, args.samples), den, rng)
    jb_token = jb.scaled(1 / args.length)
    data = {"ser": ser, "gen_log_ppl": gen, "jensen_bound_per_token": jb_token,
            "nfe": res.nfe, "nfe_cache_mean": float(res.nfe_cache.mean()),
            "samples": args.samples, "length": args.length, "plan": repr(plan),
            "language": repr(lang), "seed": args.seed}
    if args.json:
        _print_json(data)
        return 0
    print(f"{lang!r}, L = {args.length}, {plan!r}, {args.samples} samples, seed {args.seed}")
    print(_table([("quantity", "estimate (95% interval)"),
                  ("SER", str(ser)),
                  ("gen. log-perplexity (nats/token)", str(gen)),
                  ("Jensen bound KL/L (nats/token)", str(jb_token)),
                  ("NFE ddpm / ddpm_cache (mean)", f"{res.nfe} / {res.nfe_cache.mean():.2f}")]))
    return 0


def _add_simulate(sub) -> None:
    p = sub.add_parser("simulate", help="Monte-Carlo SER, perplexity and KL bound at any L",
                       description="Sample with factorized parallel unmasking and estimate SER, "
                                   "generative perplexity and the Jensen KL bound, each with a "
                                   "95% interval.")
    _add_language_source(p)
    p.add_argument("--length", type=int, required=True)
    _add_plan_arguments(p)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_simulate)


# ------------------------------------------------------------------------------ ser / steps


def _p_e(args) -> float:
    from .theory.interval import collision_error_probability

    if args.eps_learning is None:
        return 0.5
    return collision_error_probability(args.eps_learning)


def _cmd_ser(args) -> int:
    from .theory.interval import oracle_ser, theorem_c9_bound

    plan = Schedule.named(args.schedule, args.steps)
    p_e = _p_e(args)
    ser = oracle_ser(plan, args.interval, args.length, p_e=p_e)
    c = args.steps / args.length
    data = {"ser": ser, "interval": args.interval, "length": args.length, "steps": args.steps,
            "schedule": args.schedule, "p_e": p_e}
    if args.interval == 5:
        data["theorem_4_4_lower_bound"] = theorem_c9_bound(c, args.length, p_e=p_e)
    if args.json:
        _print_json(data)
        return 0
    print(f"Example C.7, interval {args.interval}, L = {args.length}, N = {args.steps} "
          f"({args.schedule}), pair error probability p_e = {p_e:g}")
    print(f"exact SER: {ser:.10g}")
    if "theorem_4_4_lower_bound" in data:
        print(f"Theorem 4.4 lower bound at C = N/L = {c:g}: {data['theorem_4_4_lower_bound']:.6g}")
    return 0


def _add_ser(sub) -> None:
    p = sub.add_parser("ser", help="exact SER of Example C.7",
                       description="Exact sequence error rate of factorized sampling on the "
                                   "interval-parity language (Example C.7).")
    p.add_argument("--interval", type=int, required=True, help="interval length l")
    p.add_argument("--length", type=int, required=True, help="L, a multiple of l")
    p.add_argument("--steps", type=int, required=True, help="number of steps N")
    p.add_argument("--schedule", default="linear", help=f"family: {SCHEDULE_HELP}")
    p.add_argument("--eps-learning", type=float, default=None,
                   help="model error: pairs collide wrongly with p_e = 1/2 - eps_learning")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_ser)


def _cmd_steps(args) -> int:
    if args.interval is not None:
        from .theory.interval import c9_max_constant, min_steps_for_ser, min_steps_lower_bound

        if args.ser is None:
            raise ArgumentError("--interval needs --ser TARGET")
        p_e = _p_e(args)
        n = min_steps_for_ser(args.interval, args.length, args.ser, p_e=p_e,
                              family=args.schedule)
        floor = min_steps_lower_bound(args.interval, args.length, args.ser, p_e=p_e)
        data = {"steps": n, "steps_per_length": n / args.length, "interval": args.interval,
                "length": args.length, "ser_target": args.ser, "p_e": p_e,
                "lower_bound_steps": floor}
        if args.interval == 5:
            data["theorem_4_4_max_C"] = c9_max_constant(p_e=max(p_e, 1e-12))
        if args.json:
            _print_json(data)
            return 0
        print(f"smallest N with exact SER <= {args.ser:g} (Example C.7, l = {args.interval}, "
              f"L = {args.length}, {args.schedule}): N = {n}  (N/L = {n / args.length:.4g})")
        print(f"Lemma C.6 / Theorem 4.4: no schedule reaches it with fewer than N = {floor} "
              f"steps (N/L = {floor / args.length:.4g})")
        if "theorem_4_4_max_C" in data:
            print(f"Theorem 4.4: SER >= 1/2 whenever N <= C L with C <= "
                  f"{data['theorem_4_4_max_C']:.4g} (large L)")
        return 0
    if args.language is None and args.preset is None:
        raise ArgumentError("give --interval (Example C.7) or --language/--preset with "
                         "--kl-per-token")
    if args.kl_per_token is None:
        raise ArgumentError("--language needs --kl-per-token X")
    from .metrics import jensen_bound

    lang = _language(args)
    target = args.kl_per_token

    def estimate(n: int):
        return jensen_bound(lang, Schedule.named(args.schedule, n), args.length, args.samples,
                            None, args.seed)

    limit = args.length * 64
    hi = first_true(lambda n: estimate(n).high / args.length <= target, limit)
    if hi is None:
        raise ArgumentError(f"--kl-per-token {target} not reached with {limit} steps")
    est = estimate(hi)
    data = {"steps": hi, "jensen_bound_per_token": est.value / args.length,
            "upper_95": est.high / args.length, "target": target, "length": args.length}
    if args.json:
        _print_json(data)
        return 0
    print(f"smallest N whose Jensen bound per token (95% upper end, Monte-Carlo with "
          f"{args.samples} samples) is <= {target:g}: N = {hi} "
          f"(estimate {est.value / args.length:.4g} nats/token)")
    return 0


def _add_steps(sub) -> None:
    p = sub.add_parser("steps", help="smallest number of steps for a target",
                       description="Smallest N reaching an exact SER target on Example C.7, or a "
                                   "Jensen-bound KL per token on a language.")
    p.add_argument("--interval", type=int, help="Example C.7 interval length l")
    p.add_argument("--ser", type=float, help="target SER")
    _add_language_source(p, required=False)
    p.add_argument("--kl-per-token", type=float, help="target Jensen bound per token (nats)")
    p.add_argument("--length", type=int, required=True)
    p.add_argument("--schedule", default="linear", help=f"family: {SCHEDULE_HELP}")
    p.add_argument("--eps-learning", type=float, default=None)
    p.add_argument("--samples", type=int, default=200, help="Monte-Carlo samples (language)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_steps)


# ------------------------------------------------------------------------------ bound


def _cmd_bound(args) -> int:
    from .theory.ngram import min_length, ter_bound

    which = {"paper": "A", "adaptive": "B"}[args.schedule]
    sched = (Schedule.paper_ngram(args.n, args.eps) if which == "A"
             else Schedule.adaptive_ngram(args.n, args.eps))
    l0 = min_length(args.n, args.eps)
    length = args.length
    if length is not None and length < l0:
        raise ArgumentError(f"--length must be >= the minimum length L_0 = {l0} of Lemma B.12, "
                         f"got {length}")
    bound = ter_bound(args.n, args.eps, args.vocab, args.eps_learning)
    bits = bound.gap / math.log(2)
    data = {
        "n": args.n, "eps": args.eps, "vocab": args.vocab, "schedule": args.schedule,
        "steps": sched.num_steps, "min_length": l0,
        "ter_bound": {"nats": bound.gap, "bits": bits,
                      "statement": "log TER(p) - log TER(q) <= eps_learning + 4 eps log|V|"},
        "eps_learning": args.eps_learning,
        "masses": [{"mass": m, "count": c} for m, c in sched.runs()],
        "alphas": sched.alphas.tolist() if args.json else None,
        "expected_nfe": sched.expected_nfe(length or l0),
    }
    if args.verify:
        data["verify"] = _verify_bound(args, sched, length or l0)
    if args.json:
        _print_json(data)
        return 0
    label = {"A": "Schedule A (paper_ngram)", "B": "Schedule B (adaptive_ngram)"}[which]
    print(f"Lemma B.12 / Theorem 4.2 for n = {args.n}, eps = {args.eps:g}, |V| = {args.vocab}")
    print(f"  schedule        {label}")
    print(f"  steps N         {sched.num_steps}")
    runs = ", ".join(f"{c} x {m:.6g}" for m, c in sched.runs()[:6])
    more = " ..." if len(sched.runs()) > 6 else ""
    print(f"  masses p^(k)    {runs}{more}")
    print(f"  min length L_0  {l0}")
    print(f"  expected NFE    {data['expected_nfe']:.1f} at L = {length or l0} (ddpm_cache)")
    print(f"  TER guarantee   log TER(p) - log TER(q) <= {bound.gap:.6g} nats "
          f"= {bits:.6g} bits per token (eps_learning = {args.eps_learning:g})")
    if args.verify:
        v = data["verify"]
        print(f"  verify at L = {v['length']} ({v['language']}, {v['samples']} instances):")
        print(f"    dependency excess / L     {v['excess_per_token']}   (bound 4 eps = "
              f"{4 * args.eps:g})")
        print(f"    Jensen KL bound / L       {v['jensen_per_token']} nats   (guarantee "
              f"{bound.gap:.6g})")
    return 0


def _verify_bound(args, sched: Schedule, length: int) -> dict:
    from .metrics import jensen_bound
    from .theory.ngram import excess_monte_carlo

    name = f"{args.n}-gram"
    lang = preset(name) if name in PRESETS else None
    excess = excess_monte_carlo(sched, length, args.n, num_samples=args.samples, seed=args.seed)
    out = {"length": length, "samples": args.samples, "excess_per_token": excess,
           "language": name if lang else "none (no Table 1 preset of this order)"}
    if lang is not None:
        if 8.0 * args.samples * length * lang.num_contexts > 4 * 2**30:
            raise ArgumentError(f"--verify at L = {length} with {args.samples} "
                                f"samples is too large "
                             "for the Jensen-bound estimate; lower --samples or --length")
        jb = jensen_bound(lang, sched, length, args.samples, None, args.seed)
        out["jensen_per_token"] = jb.scaled(1 / length)
    return out


def _add_bound(sub) -> None:
    p = sub.add_parser("bound", help="Lemma B.12 schedule and Theorem 4.2 TER guarantee",
                       description="Construct the Lemma B.12 schedule for an n-gram language and "
                                   "print its steps, minimum length and the TER guarantee.")
    p.add_argument("--n", type=int, required=True, help="n-gram order (>= 2)")
    p.add_argument("--eps", type=float, required=True, help="epsilon in (0, 1)")
    p.add_argument("--vocab", type=int, default=8, help="vocabulary size |V| (default 8)")
    p.add_argument("--schedule", choices=("paper", "adaptive"), default="paper",
                   help="paper = Schedule A (default), adaptive = Schedule B")
    p.add_argument("--length", type=int, default=None, help="sequence length (>= L_0)")
    p.add_argument("--eps-learning", type=float, default=0.0,
                   help="Assumption 4.1's learning error in nats (default 0)")
    p.add_argument("--verify", action="store_true",
                   help="Monte-Carlo the excess and the Jensen KL bound on a Table 1 n-gram")
    p.add_argument("--samples", type=int, default=4, help="instances for --verify")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bound)


# ------------------------------------------------------------------------------ verify


def _cmd_verify(args) -> int:
    import time

    from .verify import verify

    start = time.perf_counter()

    def progress(name: str) -> None:
        if not args.json:
            print(f"checking {name} ...", file=sys.stderr, flush=True)

    checks = verify(quick=args.quick, seed=args.seed, progress=progress)
    elapsed = time.perf_counter() - start
    bad = [c for c in checks if not c.as_expected]
    if args.json:
        _print_json({"checks": [c.as_dict() for c in checks], "seconds": elapsed,
                     "all_as_expected": not bad})
    else:
        rows = [("statement", "label", "verdict", "margin", "cases", "worst case")]
        for c in checks:
            verdict = ("holds" if c.holds else "FAILS") + (
                "" if c.expected else (" (documented)" if not c.holds else " (expected to fail)"))
            rows.append((c.statement, c.label, verdict, f"{c.margin:.3g}", str(c.cases),
                         c.worst_case))
        print(_table(rows))
        print(f"{len(checks)} statements checked in {elapsed:.1f} s; "
              f"{len(checks) - len(bad)} as expected, {len(bad)} not")
    return 1 if bad else 0


def _add_verify(sub) -> None:
    p = sub.add_parser("verify", help="check every statement of the paper numerically",
                       description="Run every lemma and theorem's check on a fixed battery of "
                                   "languages; exit 1 if a statement expected to hold fails.")
    p.add_argument("--quick", action="store_true", help="smaller battery (< 1 minute)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_verify)


# ------------------------------------------------------------------------------ main


def _check_bound_args(args) -> None:
    if args.n < 2:
        raise ArgumentError(f"--n must be >= 2, got {args.n}")
    if not 0 < args.eps < 1:
        raise ArgumentError(f"--eps must lie in (0, 1), got {args.eps}")
    if args.vocab < 1:
        raise ArgumentError(f"--vocab must be >= 1, got {args.vocab}")
    if args.eps_learning < 0:
        raise ArgumentError(f"--eps-learning must be >= 0, got {args.eps_learning}")


TORCH_VERBS = {
    "train": ("train a small MDM or AR transformer on a language (torch extra)",
              "add_train_arguments", "run_train"),
    "evaluate": ("measure a trained run against the exact language (torch extra)",
                 "add_evaluate_arguments", "run_evaluate"),
}


def _raiser(err: Exception):
    def run(_args) -> int:
        raise err

    return run


def _add_torch_verbs(sub, command: str | None, full: bool) -> None:
    """``train`` / ``evaluate`` import torch, so their arguments are only built when the verb is
    used (or ``full``, for the documentation): ``mdm-exact bound`` stays fast."""
    for name, (help_text, add_name, run_name) in TORCH_VERBS.items():
        p = sub.add_parser(name, help=help_text, description=help_text.capitalize() + ".")
        if command != name and not full:
            continue
        try:
            from .nn import commands
        except ImportError as err:
            p.set_defaults(func=_raiser(err))
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            continue
        getattr(commands, add_name)(p)
        p.set_defaults(func=getattr(commands, run_name))


def _add_figure(sub) -> None:
    from .plotting import add_figure_arguments

    p = sub.add_parser("figure", help="render a figure of the paper with the exact oracle")
    add_figure_arguments(p)


def build_parser(argv: Sequence[str] | None = None, *, full: bool = False
                 ) -> argparse.ArgumentParser:
    """The argparse parser; ``argv`` tells which verb will run (torch verbs are filled lazily),
    ``full=True`` fills every verb."""
    command = next((a for a in (argv or []) if not a.startswith("-")), None)
    parser = argparse.ArgumentParser(
        prog="mdm-exact",
        description="Exact ground truth for masked diffusion language models (Feng et al., "
                    "arXiv 2502.09622).",
    )
    parser.add_argument("--version", action="version", version=f"mdm-exact {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_language(sub)
    _add_exact(sub)
    _add_simulate(sub)
    _add_ser(sub)
    _add_bound(sub)
    _add_steps(sub)
    _add_verify(sub)
    _add_figure(sub)
    _add_torch_verbs(sub, command, full)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mdm-exact`` with ``argv`` (default: sys.argv); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        if args.command == "bound":
            _check_bound_args(args)
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"mdm-exact: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
