"""The ``mdm-exact`` command line (``python -m mdm_exact`` is the same).

Verbs: ``language`` (generate / inspect / save a language), ``exact`` (exact metrics at small L),
``simulate`` (Monte-Carlo metrics at any L), ``ser`` (exact Example C.7 SER), ``bound`` (Lemma
B.12's schedule and Theorem 4.2's guarantee), ``steps`` (smallest N for a target), ``verify``
(every statement checked), ``train`` / ``evaluate`` (torch extra), ``figure`` (plots).

Exit status: 0 on success; 2 with one line on stderr, ``mdm-exact: error: ...``, for a bad
argument (argparse's own errors included) or any refusal of the library (``MdmExactError``, e.g.
a computation above the memory budget, set with ``--max-memory SIZE`` before or after the verb);
1 when the output cannot be written (a closed pipe exits quietly, a full disk with one line); 130
with ``mdm-exact: interrupted`` on Ctrl-C. Anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import signal
import sys
import time
from collections.abc import Sequence

import numpy as np

from . import __version__
from ._io import input_file, output_file, print_json
from ._utils import (
    MEMORY_ENV,
    check_memory,
    first_true,
    format_count,
    int_times,
    parse_bytes,
    progress_bar,
)
from .errors import ArgumentError, MdmExactError
from .languages import PRESETS, Language, load_language, preset
from .policies import is_policy
from .schedules import FixedCountPlan, Schedule

SCHEDULE_HELP = "linear, cosine, loglinear[:EPS] or polynomial:A"


def _print_json(data) -> None:
    print_json(data)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _or_na(value) -> str:
    """A number for the text tables, or "n/a" where it is not defined (None)."""
    return "n/a" if value is None else f"{value:.10g}"


NATS_PER_SEQUENCE, NATS_PER_TOKEN, BITS_PER_TOKEN = ("nats per sequence", "nats per token",
                                                     "bits per token")
PROBABILITY, TOKENS, STEPS, DENOISER_CALLS = ("probability", "tokens", "steps",
                                              "denoiser calls")
DEPENDENCIES_PER_SEQUENCE, DEPENDENCIES_PER_TOKEN = ("dependencies per sequence",
                                                     "dependencies per token")
"""The units the text tables print, one on every row."""


def _count(minimum: int):
    """An argparse ``type``: an integer >= ``minimum`` (the error names the option)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _size(text: str) -> float:
    try:
        return parse_bytes(text, "SIZE")
    except MdmExactError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("SIZE ")) from None


def _add_language_source(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--language", metavar="FILE", help="a language saved as .json or .npz")
    group.add_argument("--preset", choices=sorted(PRESETS), help="a Table 1 language")
    parser.add_argument("--threshold", type=float, default=None,
                        help="with --preset: pruning threshold (0 = the unpruned TER variant)")
    parser.add_argument("--language-seed", type=_count(0), default=None,
                        help="with --preset: seed of the random tables (default 0)")


def _language(args) -> Language:
    """The language of ``--language FILE`` or ``--preset NAME``; the preset options are refused
    beside a file rather than silently ignored."""
    if args.language is not None:
        ignored = [name for name, value in (("--threshold", args.threshold),
                                            ("--language-seed", args.language_seed))
                   if value is not None]
        if ignored:
            verb = "applies" if len(ignored) == 1 else "apply"
            raise ArgumentError(f"{' and '.join(ignored)} {verb} to --preset only, not to "
                                f"--language {args.language!r}")
        return load_language(input_file("--language", args.language))
    seed = 0 if args.language_seed is None else args.language_seed
    return preset(args.preset, threshold=args.threshold, seed=seed)


# ------------------------------------------------------------------------------ language


def _cmd_language(args) -> int:
    save = None
    if args.save is not None:
        save = output_file("--save", args.save, overwrite=args.overwrite)
        if save.suffix not in (".json", ".npz"):
            raise ArgumentError(f"--save must end in .json or .npz, got {args.save!r}")
    if args.sample and not args.length:
        raise ArgumentError("--sample needs --length")
    lang = _language(args)
    if save is not None:
        lang.save(save)
    info: dict = {"kind": lang.kind, "vocab_size": lang.vocab_size, "metadata": lang.metadata}
    if hasattr(lang, "order"):
        info["order"] = lang.order
    if hasattr(lang, "num_states"):
        info["num_states"] = lang.num_states
    if hasattr(lang, "interval"):
        info["interval"] = lang.interval
    if args.length:
        ent = lang.entropy(args.length, seed=args.seed)
        info.update(length=args.length, entropy=ent,
                    entropy_per_token=ent.scaled(1 / args.length))
    if args.sample:
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
            unit = {"length": TOKENS, "entropy": NATS_PER_SEQUENCE,
                    "entropy_per_token": NATS_PER_TOKEN}.get(key)
            print(f"{key}: {value}" + (f" ({unit})" if unit else ""))
    if args.save:
        print(f"saved to {args.save}")
    return 0


def _add_language(sub) -> None:
    p = sub.add_parser("language", help="generate, inspect and save a language",
                       description="Generate (Table 1 presets, Algorithms 1 and 2), inspect and "
                                   "save a language as JSON or .npz.")
    _add_language_source(p)
    p.add_argument("--length", type=_count(1), default=0,
                   help="report the entropy per token at L")
    p.add_argument("--sample", type=_count(1), default=0, metavar="NUM",
                   help="print NUM samples (needs --length)")
    p.add_argument("--seed", type=_count(0), default=0,
                   help="seed of samples / Monte-Carlo entropy")
    p.add_argument("--save", metavar="FILE", help="write the language to FILE (.json / .npz)")
    p.add_argument("--overwrite", action="store_true", help="let --save replace an existing file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_language)


# ------------------------------------------------------------------------------ exact / simulate


def _plan(args, length: int):
    if getattr(args, "plan_file", None) is not None:
        return _plan_from_file(args, length)
    if getattr(args, "policy", None) is not None:
        from .policies import parse_policy

        _refuse_together(args, "--policy", {"--steps": "steps", "--alphas": "alphas",
                                            "--fixed-count": "fixed_count"})
        return parse_policy(args.policy, args.block_length)
    if getattr(args, "block_length", None) is not None:
        raise ArgumentError("--block-length applies only with --policy")
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
    return Schedule.named(args.schedule or "linear", args.steps)


def _plan_from_file(args, length: int):
    """The plan or policy of ``--plan-file``, checked against ``--length``; the options that
    build a plan themselves are refused beside it."""
    from .plan_files import load_plan

    _refuse_together(args, "--plan-file", {
        "--steps": "steps", "--schedule": "schedule", "--alphas": "alphas",
        "--fixed-count": "fixed_count", "--policy": "policy", "--block-length": "block_length"})
    path = input_file("--plan-file", args.plan_file)
    plan = load_plan(path)
    try:
        plan.check_length(length)
    except ArgumentError as err:
        raise ArgumentError(f"--plan-file {str(path)!r} does not suit --length {length}: "
                            f"{err}") from None
    return plan


def _denoiser(args, lang):
    from .sampling import PerturbedOracle

    if args.eps_learning is None:
        return None
    return PerturbedOracle(lang, args.eps_learning)


def _cmd_exact(args) -> int:
    from .exact import exact_metrics

    lang = _language(args)
    plan = _plan(args, args.length)
    m = exact_metrics(lang, plan, args.length, _denoiser(args, lang), progress=True)
    data = {**m.as_dict(), "plan": repr(plan), "language": repr(lang)}
    if args.json:
        _print_json(data)
        return 0
    print(f"{lang!r}, L = {args.length}, {plan!r}")
    fields = m.as_dict()
    rows = [("quantity", "value", "unit", "meaning")]
    rows += [(key, _or_na(fields[key]), unit, meaning)
             for key, (unit, meaning) in EXACT_ROWS.items()]
    print(_table(rows))
    return 0


EXACT_ROWS = {
    "kl": (NATS_PER_SEQUENCE, "KL(q || p)"),
    "kl_per_token": (NATS_PER_TOKEN, "KL(q || p) / L"),
    "log_ter_gap": (NATS_PER_TOKEN, "log TER(p) - log TER(q) = KL / L (Theorem 4.2 bounds it)"),
    "log_ter": (NATS_PER_TOKEN, "eq. 4, E_q[-log p(x)] / L"),
    "log_ter_q": (NATS_PER_TOKEN, "H(q) / L, the optimum of log_ter"),
    "gen_log_ppl": (NATS_PER_TOKEN, "E_p[-log q(x)] / L (inf once p leaves supp q)"),
    "ser": (PROBABILITY, "eq. 5, p(outside supp q)"),
    "jensen_bound": (NATS_PER_SEQUENCE, "E_tau KL(q || p_tau) (Lemma B.2)"),
    "jensen_bound_per_token": (NATS_PER_TOKEN, "E_tau KL(q || p_tau) / L"),
    "jensen_gap": (NATS_PER_SEQUENCE, "jensen_bound - kl, the slack of Lemma B.2"),
    "jensen_gap_per_token": (NATS_PER_TOKEN, "(jensen_bound - kl) / L"),
    "entropy": (NATS_PER_SEQUENCE, "H(q)"),
    "entropy_per_token": (NATS_PER_TOKEN, "H(q) / L"),
    "total_mass": (PROBABILITY, "sum of p (1 up to rounding)"),
}
"""The rows of ``exact``'s table: field of ``ExactMetrics`` -> (unit, meaning); the length L is
in the title."""


def _add_plan_arguments(p) -> None:
    p.add_argument("--steps", type=_count(1), help="number of steps N of a schedule family")
    p.add_argument("--schedule", default=None,
                   help=f"family: {SCHEDULE_HELP} (default linear)")
    p.add_argument("--alphas", help="alpha grid a0,...,aN on t_i = i/N (a0 = 1)")
    p.add_argument("--fixed-count", type=_count(1), metavar="N",
                   help="reveal L/N positions per step (fixed-count plan)")
    p.add_argument("--eps-learning", type=float, default=None,
                   help="use a PerturbedOracle with this KL per masked position (nats)")
    p.add_argument("--policy", metavar="SPEC",
                   help="an adaptive unmasking policy instead of a plan: topk-confidence:N, "
                        "topk-margin:N, topk-entropy:N, random-topk:N, threshold:TAU, eb:GAMMA "
                        "or factor:F")
    p.add_argument("--block-length", type=_count(1), metavar="B",
                   help="with --policy: semi-autoregressive blocks of B positions")
    p.add_argument("--plan-file", metavar="FILE",
                   help="a plan or policy saved as JSON (bound --save, save_plan; format in "
                        "docs/cli.md) instead of the options above")


def _add_exact(sub) -> None:
    p = sub.add_parser("exact", help="exact KL / TER / SER at small L",
                       description="The exact output distribution of factorized parallel "
                                   "unmasking and its metrics (small L only).")
    _add_language_source(p)
    p.add_argument("--length", type=_count(1), required=True, help="sequence length L")
    _add_plan_arguments(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_exact)


def _cmd_simulate(args) -> int:
    """Monte-Carlo SER and gen. perplexity (and its biased mean over the valid samples); the true
    KL bracketed by the SER lower bound and, for plans, the Jensen bound, with the
    exact-per-sample KL and log TER where the likelihood is exact; every KL per sequence and per
    token. Under a policy, NFE per row (mean and percentiles); the Jensen bound is defined for
    state-independent plans only (null)."""
    from .likelihood import ser_kl_lower_bound
    from .metrics import generative_log_perplexity, sequence_error_rate
    from .sampling import sample

    lang = _language(args)
    plan = _plan(args, args.length)
    den = _denoiser(args, lang)
    policy = is_policy(plan)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    res = sample(lang, plan, args.length, args.samples, den, rng, progress=True)
    sample_seconds = time.perf_counter() - start
    ser = sequence_error_rate(lang, res.tokens)
    gen = generative_log_perplexity(lang, res.tokens)
    num_valid = int(np.asarray(lang.in_support(res.tokens)).sum())
    gen_valid = (generative_log_perplexity(lang, res.tokens, valid_only=True)
                 if num_valid >= 2 else None)
    jb, jensen_note = ((None, "n/a (defined for plans only)") if policy else
                       _simulate_jensen(args, lang, plan, den, rng, res.nfe, sample_seconds))
    ser_floor = ser_kl_lower_bound(ser)
    kl, kl_note = _simulate_kl(args, lang, plan, den, rng)
    nfe = res.nfe_per_row
    quantiles = {str(q): float(np.percentile(nfe, q)) for q in (5, 50, 95)}
    per_token = 1 / args.length
    data = {"ser": ser, "gen_log_ppl": gen, "gen_log_ppl_valid_only": gen_valid,
            "valid_samples": num_valid,
            "jensen_bound": jb, "jensen_bound_per_token": jb.scaled(per_token) if jb else None,
            "ser_kl_lower_bound": ser_floor,
            "ser_kl_lower_bound_per_token": ser_floor.scaled(per_token),
            "kl": kl.kl if kl else None, "kl_per_token": kl.kl_per_token if kl else None,
            "log_ter": kl.log_ter if kl else None, "kl_note": kl_note,
            "jensen_note": jensen_note,
            "nfe_mean": float(nfe.mean()), "nfe_quantiles": quantiles,
            "samples": args.samples, "length": args.length, "plan": repr(plan),
            "language": repr(lang), "seed": args.seed}
    if policy:
        data["policy"] = plan.to_dict()
    else:
        data.update(nfe=res.nfe, nfe_cache_mean=float(res.nfe_cache.mean()))
    if args.json:
        _print_json(data)
        return 0
    print(f"{lang!r}, L = {args.length}, {plan!r}, {args.samples} samples, seed {args.seed}")
    valid = f"{num_valid} of {args.samples} samples inside supp q"
    no_kl = "n/a (as above)"
    rows = [("quantity", "estimate (95% interval)", "unit"),
            ("SER", str(ser), PROBABILITY),
            ("gen. log-perplexity", str(gen), NATS_PER_TOKEN),
            ("gen. log-perplexity, valid samples only (biased)",
             f"{gen_valid} ({valid})" if gen_valid else f"n/a ({valid}, needs 2)",
             NATS_PER_TOKEN),
            ("KL, exact per sample", str(kl.kl) if kl else kl_note, NATS_PER_SEQUENCE),
            ("KL/L, exact per sample", str(kl.kl_per_token) if kl else no_kl, NATS_PER_TOKEN),
            ("log TER, eq. 4", str(kl.log_ter) if kl else no_kl, NATS_PER_TOKEN),
            ("Jensen bound on KL", str(jb) if jb else jensen_note, NATS_PER_SEQUENCE),
            ("Jensen bound on KL/L", str(data["jensen_bound_per_token"]) if jb else no_kl,
             NATS_PER_TOKEN),
            ("SER lower bound on KL", str(ser_floor), NATS_PER_SEQUENCE),
            ("SER lower bound on KL/L", str(data["ser_kl_lower_bound_per_token"]),
             NATS_PER_TOKEN)]
    if not policy:
        rows.append(("NFE ddpm / ddpm_cache (mean)", f"{res.nfe} / {res.nfe_cache.mean():.2f}",
                     DENOISER_CALLS))
    rows += [("NFE per row: mean", f"{nfe.mean():.2f}", DENOISER_CALLS),
             ("NFE per row: 5 / 50 / 95th percentile",
              " / ".join(f"{v:g}" for v in quantiles.values()), DENOISER_CALLS)]
    print(_table(rows))
    if math.isinf(gen.value) and args.preset is not None:
        print(f"hint: some samples left supp q of the pruned preset {args.preset}; "
              "--threshold 0 runs its unpruned variant (every sequence in the support), on "
              "which the gen. perplexity stays finite")
    return 0


KL_SECONDS = 60.0
"""``simulate`` computes the exact-per-sample KL and the Jensen bound by default only when each
is estimated to take at most this long; ``--kl-samples`` / ``--jensen-samples`` ask for them
regardless."""


def _simulate_jensen(args, lang, plan, den, rng, executed_steps: int, sample_seconds: float):
    """The Jensen bound of ``simulate`` (Lemma B.2) and None, or None and why it was skipped.

    Its cost is one denoiser call on K rows per distinct step drawn among its K x L positions
    (``expected_nfe(K L)`` for a Schedule), each priced at the sampler's measured seconds per
    executed step, scaled from its ``samples`` rows to K."""
    from .metrics import jensen_bound

    rows = args.jensen_samples if args.jensen_samples is not None else max(2, args.samples)
    if args.jensen_samples is None:
        calls = (plan.expected_nfe(rows * args.length) if isinstance(plan, Schedule)
                 else plan.expected_nfe(args.length))
        seconds = sample_seconds / max(1, executed_steps) * calls * rows / args.samples
        if seconds > KL_SECONDS:
            return None, (f"not computed: about {seconds:.0f} s for {rows} samples "
                          "(ask with --jensen-samples K)")
    return jensen_bound(lang, plan, args.length, rows, den, rng, progress=True), None


def _simulate_kl(args, lang, plan, den, rng):
    """The KL / log TER estimate of ``simulate`` where ``log_likelihood`` is exact for this
    language and plan, else None and the reason (the Jensen bound and the SER bound still
    bracket the KL)."""
    from .likelihood import kl_estimate_within

    if args.kl_samples is not None:
        return kl_estimate_within(lang, plan, args.length, args.kl_samples, den, rng)
    rows = max(2, min(args.samples, 100))
    kl, note = kl_estimate_within(lang, plan, args.length, rows, den, rng,
                                  max_seconds=KL_SECONDS)
    if kl is None and note.startswith("not computed"):
        note += " (ask with --kl-samples K)"
    return kl, note


def _add_simulate(sub) -> None:
    p = sub.add_parser("simulate", help="Monte-Carlo SER, perplexity and KL bound at any L",
                       description="Sample with factorized parallel unmasking and estimate SER, "
                                   "generative perplexity and the Jensen KL bound, each with a "
                                   "95% interval.")
    _add_language_source(p)
    p.add_argument("--length", type=_count(1), required=True, help="sequence length L")
    _add_plan_arguments(p)
    p.add_argument("--samples", type=_count(1), default=1000, help="Monte-Carlo samples")
    p.add_argument("--kl-samples", type=_count(2), default=None, metavar="K",
                   help="draws x ~ q for the exact-per-sample KL and log TER, where the "
                        "likelihood is exact (default: min(samples, 100), skipped when "
                        f"estimated above {KL_SECONDS:g} s)")
    p.add_argument("--jensen-samples", type=_count(2), default=None, metavar="K",
                   help="draws for the Monte-Carlo Jensen bound (default: max(2, samples), "
                        f"skipped when estimated above {KL_SECONDS:g} s)")
    p.add_argument("--seed", type=_count(0), default=0, help="sampling seed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_simulate)


# ------------------------------------------------------------------------------ ser / steps


def _p_e(args) -> float:
    from .theory.interval import collision_error_probability

    if args.eps_learning is None:
        return 0.5
    return collision_error_probability(args.eps_learning)


def _cmd_ser(args) -> int:
    from .theory.interval import oracle_ser_family, theorem_c9_bound, theorem_c9_is_vacuous

    p_e = _p_e(args)
    # linear: O(l^2 log N) without an (N,) array; other families are refused above the budget
    ser = oracle_ser_family(args.schedule, args.steps, args.interval, args.length, p_e=p_e)
    c = args.steps / args.length
    data = {"ser": ser, "interval": args.interval, "length": args.length, "steps": args.steps,
            "schedule": args.schedule, "p_e": p_e}
    if args.interval == 5:
        data["theorem_4_4_lower_bound"] = theorem_c9_bound(c, args.length, p_e=p_e)
        data["theorem_4_4_vacuous"] = theorem_c9_is_vacuous(c, args.length, p_e=p_e)
    if args.json:
        _print_json(data)
        return 0
    print(f"Example C.7, interval {args.interval}, L = {args.length}, N = {args.steps} "
          f"({args.schedule}), pair error probability p_e = {p_e:g}")
    rows = [("quantity", "value", "unit", "meaning"),
            ("ser", f"{ser:.10g}", PROBABILITY, "exact SER, eq. 5")]
    if "theorem_4_4_lower_bound" in data:
        meaning = f"Theorem 4.4 lower bound on SER at C = N/L = {c:g}"
        if data["theorem_4_4_vacuous"]:
            meaning += " (vacuous: C L = N <= 1.5 or p_e = 0)"
        rows.append(("theorem_4_4_lower_bound", f"{data['theorem_4_4_lower_bound']:.6g}",
                     PROBABILITY, meaning))
    print(_table(rows))
    return 0


def _add_ser(sub) -> None:
    p = sub.add_parser("ser", help="exact SER of Example C.7",
                       description="Exact sequence error rate of factorized sampling on the "
                                   "interval-parity language (Example C.7).")
    p.add_argument("--interval", type=_count(1), required=True, help="interval length l")
    p.add_argument("--length", type=_count(1), required=True, help="L, a multiple of l")
    p.add_argument("--steps", type=_count(1), required=True, help="number of steps N")
    p.add_argument("--schedule", default="linear", help=f"family: {SCHEDULE_HELP}")
    p.add_argument("--eps-learning", type=float, default=None,
                   help="model error: pairs collide wrongly with p_e = 1/2 - eps_learning")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_ser)


def _refuse_together(args, mode: str, options: dict[str, str]) -> None:
    """One-line refusal of options given with a mode that does not use them."""
    given = [flag for flag, attr in options.items() if getattr(args, attr) is not None]
    if given:
        verb = "does" if len(given) == 1 else "do"
        raise ArgumentError(f"{' and '.join(given)} {verb} not apply to {mode}")


def _cmd_steps(args) -> int:
    if args.interval is not None:
        return _steps_interval(args)
    if args.language is None and args.preset is None:
        raise ArgumentError("give --interval (Example C.7), or --language or --preset with "
                            "--kl-per-token X or --ser TARGET")
    source = "--preset" if args.preset is not None else "--language"
    _refuse_together(args, f"{source} (Monte-Carlo search)", {"--eps-learning": "eps_learning"})
    if args.kl_per_token is None and args.ser is None:
        raise ArgumentError(f"{source} needs a target: --kl-per-token X (Jensen bound per token) "
                            "or --ser TARGET (sequence error rate)")
    if args.kl_per_token is not None and args.ser is not None:
        raise ArgumentError(f"give one target with {source}: --kl-per-token or --ser, not both")
    if args.plan_file is not None and args.schedule is not None:
        raise ArgumentError("give --schedule or --plan-file, not both (the file's alpha curve "
                            "is the family searched)")
    if args.ser is not None:
        return _steps_ser(args, source)
    return _steps_kl(args)


def _steps_family(args):
    """N -> the Schedule of N steps searched: ``--schedule``'s family, or the alpha curve of the
    Schedule in ``--plan-file`` (piecewise linear through its grid alpha(i / N_file)) on the
    grid i / N; and the family's name."""
    if args.plan_file is None:
        name = args.schedule or "linear"
        return (lambda n: Schedule.named(name, n)), name
    from .plan_files import load_plan

    path = input_file("--plan-file", args.plan_file)
    saved = load_plan(path)
    if not isinstance(saved, Schedule):
        kind = "an adaptive policy" if is_policy(saved) else f"a {type(saved).__name__}"
        raise ArgumentError(f"--plan-file {str(path)!r} holds {kind}; steps needs a Schedule, "
                            "whose alpha curve is the family searched")
    grid = saved.alphas
    knots = np.arange(grid.size) / (grid.size - 1)
    name = f"alpha curve of {path.name} (N = {saved.num_steps} there)"

    def family(n: int) -> Schedule:
        return Schedule.from_alpha(lambda t: np.interp(t, knots, grid), n, name=path.stem)

    return family, name


def _search(family, limit: int, evaluate, accept) -> tuple[int | None, dict]:
    """``first_true`` over N in [1, ``limit``] of ``accept(evaluate(N, family(N)))`` under a
    progress bar; returns the smallest accepted N (None if ``limit`` fails) and every estimate
    by N."""
    found: dict[int, object] = {}
    # first_true: at most 2 log2(limit) + 1 evaluations
    with progress_bar(True, total=2 * limit.bit_length() + 1, desc="steps search",
                      unit="N") as bar:
        def reached(n: int) -> bool:
            bar.set_postfix(N=n, refresh=False)
            found[n] = evaluate(n, family(n))
            bar.update()
            return accept(found[n])

        return first_true(reached, limit), found


def _steps_kl(args) -> int:
    target = args.kl_per_token
    if not (math.isfinite(target) and target >= 0):
        raise ArgumentError(f"--kl-per-token must be a finite number >= 0, got {target}")
    from .metrics import jensen_bound

    family, family_name = _steps_family(args)
    lang = _language(args)
    samples = 200 if args.samples is None else args.samples
    seed = 0 if args.seed is None else args.seed
    limit = args.length * 64
    hi, found = _search(
        family, limit,
        lambda n, plan: jensen_bound(lang, plan, args.length, samples, None, seed,
                                     progress=True),
        lambda est: est.high / args.length <= target)
    if hi is None:
        raise ArgumentError(f"--kl-per-token {target} not reached with {limit} steps")
    est = found[hi]
    data = {"steps": hi, "jensen_bound": est.value,
            "jensen_bound_per_token": est.value / args.length,
            "upper_95": est.high / args.length, "target": target, "length": args.length,
            "schedule": family_name}
    if args.json:
        _print_json(data)
        return 0
    print(f"smallest N whose Jensen bound per token (95% upper end, Monte-Carlo with "
          f"{samples} samples) is <= {target:g} nats per token: N = {hi} steps "
          f"(estimate {est.value / args.length:.4g} nats per token)")
    return 0


def _steps_ser(args, source: str) -> int:
    """Smallest N whose Monte-Carlo SER (eq. 5) has its 95% Wilson upper end <= ``--ser``;
    each N samples with its own seed (``--seed``, N), so no result depends on the search path."""
    target = args.ser
    if not 0 < target < 1:
        raise ArgumentError(f"--ser with {source} must lie in (0, 1) (the Wilson upper end of a "
                            f"Monte-Carlo SER is never 0), got {target}")
    from .metrics import sequence_error_rate
    from .sampling import sample

    family, family_name = _steps_family(args)
    lang = _language(args)
    samples = 2000 if args.samples is None else args.samples
    seed = 0 if args.seed is None else args.seed
    limit = args.length * 64

    def ser_at(n: int, plan) -> object:
        res = sample(lang, plan, args.length, samples, None, np.random.default_rng([seed, n]),
                     progress=True)
        return sequence_error_rate(lang, res.tokens)

    hi, found = _search(family, limit, ser_at, lambda est: est.high <= target)
    if hi is None:
        raise ArgumentError(f"--ser {target} not reached with {limit} steps (64 L)")
    rejected = max((n for n, est in found.items() if est.high > target), default=None)
    data = {"steps": hi, "ser": found[hi], "ser_target": target,
            "largest_rejected": None if rejected is None else {"steps": rejected,
                                                                "ser": found[rejected]},
            "length": args.length, "samples": samples, "seed": seed, "schedule": family_name,
            "language": repr(lang)}
    if args.json:
        _print_json(data)
        return 0
    print(f"smallest N whose SER (95% Wilson upper end, {samples} samples per N, seed {seed}) "
          f"is <= {target:g}: N = {hi} steps  ({lang!r}, L = {args.length}, {family_name})")
    rows = [("steps N", "SER (95% interval)", "unit", ""),
            (str(hi), str(found[hi]), PROBABILITY, "accepted")]
    if rejected is not None:
        rows.append((str(rejected), str(found[rejected]), PROBABILITY, "largest rejected"))
    print(_table(rows))
    return 0


def _steps_interval(args) -> int:
    from .theory.interval import c9_max_constant, min_steps_for_ser, min_steps_lower_bound

    _refuse_together(args, "--interval (Example C.7)", {
        "--language": "language", "--preset": "preset", "--threshold": "threshold",
        "--language-seed": "language_seed", "--kl-per-token": "kl_per_token",
        "--samples": "samples", "--seed": "seed", "--plan-file": "plan_file"})
    if args.ser is None:
        raise ArgumentError("--interval needs --ser TARGET")
    schedule = args.schedule or "linear"
    p_e = _p_e(args)
    n = min_steps_for_ser(args.interval, args.length, args.ser, p_e=p_e, family=schedule)
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
          f"L = {args.length}, {schedule}): N = {n} steps  (N/L = {n / args.length:.4g} steps "
          "per token)")
    print(f"Lemma C.6 / Theorem 4.4: no schedule reaches it with fewer than N = {floor} "
          f"steps (N/L = {floor / args.length:.4g} steps per token)")
    if "theorem_4_4_max_C" in data:
        print(f"Theorem 4.4: SER >= 1/2 whenever N <= C L with C <= "
              f"{data['theorem_4_4_max_C']:.4g} steps per token (large L)")
    return 0


def _add_steps(sub) -> None:
    p = sub.add_parser("steps", help="smallest number of steps for a target",
                       description="Smallest N reaching a target: the exact SER of Example C.7 "
                                   "(--interval), or on a language (--language/--preset) the "
                                   "95% upper end of a Monte-Carlo SER (--ser, Wilson) or of the "
                                   "Jensen-bound KL per token (--kl-per-token), found by doubling "
                                   "and bisection over N (a progress bar on stderr follows it).")
    p.add_argument("--interval", type=_count(1), help="Example C.7 interval length l")
    p.add_argument("--ser", type=float,
                   help="target SER: exact with --interval, else the Monte-Carlo SER's 95%% "
                        "Wilson upper end")
    _add_language_source(p, required=False)
    p.add_argument("--kl-per-token", type=float,
                   help="with --language/--preset: target Jensen bound per token (nats)")
    p.add_argument("--length", type=_count(1), required=True)
    p.add_argument("--schedule", default=None, help=f"family: {SCHEDULE_HELP} (default linear)")
    p.add_argument("--plan-file", metavar="FILE",
                   help="with --language/--preset: a Schedule saved as JSON (bound --save, "
                        "save_plan) whose alpha curve, linear between its grid points, is the "
                        "family searched instead of --schedule")
    p.add_argument("--eps-learning", type=float, default=None, help="with --interval")
    p.add_argument("--samples", type=_count(2), default=None,
                   help="with --language/--preset: Monte-Carlo samples per N (default 2000 for "
                        "--ser, 200 for --kl-per-token)")
    p.add_argument("--seed", type=_count(0), default=None,
                   help="with --language/--preset: seed (default 0); --ser samples N with the "
                        "seed (SEED, N)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_steps)


# ------------------------------------------------------------------------------ bound


def _cmd_bound(args) -> int:
    from .theory.ngram import min_length, ter_bound

    which = {"paper": "A", "adaptive": "B"}[args.schedule]
    # everything cheap and every argument first; the schedule (refused above the memory budget)
    # and the Monte Carlo last
    l0 = min_length(args.n, args.eps)
    length = args.length
    if length is not None and length < l0:
        raise ArgumentError(f"--length must be >= the minimum length L_0 = {format_count(l0)} "
                            f"of Lemma B.12, got {length}")
    at = length or l0
    bound = ter_bound(args.n, args.eps, args.vocab, args.eps_learning)
    if args.verify:
        _check_verify_size(args, at)
    save = None if args.save is None else output_file("--save", args.save,
                                                      overwrite=args.overwrite)
    sched = (Schedule.paper_ngram(args.n, args.eps) if which == "A"
             else Schedule.adaptive_ngram(args.n, args.eps))
    bits = bound.log_ter_gap_bound / math.log(2)
    for option, wanted in (("--json", args.json), ("--save", save is not None)):
        if wanted:  # Python objects and text of every run: about 700 bytes
            check_memory(f"the {option} listing of the schedule's {sched.num_runs} runs of "
                         f"masses (raise eps or lower n, or drop {option})",
                         700.0 * sched.num_runs)
    if save is not None:
        from .plan_files import save_plan

        save_plan(sched, save, overwrite=args.overwrite)
    data = {
        "n": args.n, "eps": args.eps, "vocab": args.vocab, "schedule": args.schedule,
        "steps": sched.num_steps, "min_length": l0,
        "log_ter_gap_bound": {
            "nats_per_token": bound.log_ter_gap_bound, "bits_per_token": bits,
            "statement": "log TER(p) - log TER(q) <= eps_learning + 4 eps log|V|"},
        "eps_learning": args.eps_learning,
        "plan": sched.to_dict() if args.json else None,
        "expected_nfe": sched.expected_nfe(at),
    }
    if save is not None:
        data["saved_to"] = str(save)
    if args.verify:
        data["verify"] = _verify_bound(args, sched, at)
    if args.json:
        _print_json(data)
        return 0
    label = {"A": "Schedule A (paper_ngram)", "B": "Schedule B (adaptive_ngram)"}[which]
    print(f"Lemma B.12 / Theorem 4.2 for n = {args.n}, eps = {args.eps:g}, |V| = {args.vocab}, "
          f"{label}")
    more = f" ... ({sched.num_runs} runs)" if sched.num_runs > 6 else ""
    runs = ", ".join(f"{c} x {m:.6g}" for m, c in sched.runs(6))
    guarantee = f"{bound.log_ter_gap_bound:.6g}"
    rows = [("quantity", "value", "unit"),
            ("steps N", str(sched.num_steps), STEPS),
            ("masses p^(k)", f"{runs}{more}", f"{PROBABILITY} per step"),
            ("min length L_0", str(l0), TOKENS),
            ("expected NFE", f"{data['expected_nfe']:.1f} at L = {at} (ddpm_cache)",
             DENOISER_CALLS),
            ("eps_learning", f"{args.eps_learning:g}", NATS_PER_TOKEN),
            ("log TER gap bound", f"log TER(p) - log TER(q) <= {guarantee}", NATS_PER_TOKEN),
            ("log TER gap bound", f"log TER(p) - log TER(q) <= {bits:.6g}", BITS_PER_TOKEN)]
    if args.verify:
        v = data["verify"]
        none = "n/a (no Table 1 preset of this order)"
        rows += [
            ("verify: length L", f"{v['length']} ({v['language']}, {v['samples']} instances)",
             TOKENS),
            ("verify: dependency excess", str(v["excess"]), DEPENDENCIES_PER_SEQUENCE),
            ("verify: dependency excess / L", f"{v['excess_per_token']} (bound 4 eps = "
             f"{4 * args.eps:g})", DEPENDENCIES_PER_TOKEN),
            ("verify: Jensen bound on KL", str(v.get("jensen_bound", none)), NATS_PER_SEQUENCE),
            ("verify: Jensen bound on KL / L",
             f"{v['jensen_bound_per_token']} (guarantee {guarantee})"
             if "jensen_bound_per_token" in v else none, NATS_PER_TOKEN)]
    print(_table(rows))
    if save is not None:
        print(f"saved the schedule to {save} (use it with --plan-file)")
    return 0


def _verify_language(args):
    name = f"{args.n}-gram"
    return name, (preset(name) if name in PRESETS else None)


def _check_verify_size(args, length: int) -> None:
    """``--verify``'s memory, estimated before the schedule is built or anything is drawn."""
    from .theory.ngram import BYTES_PER_DRAWN_POSITION, DRAW_BUDGET

    rows = max(1, min(args.samples, DRAW_BUDGET // length))
    check_memory(f"--verify's dependency counts at L = {format_count(length)}",
                 int_times(length, float(rows * BYTES_PER_DRAWN_POSITION)),
                 argument="--length")
    _, lang = _verify_language(args)
    if lang is not None:
        # as jensen_bound counts it: draws, steps, a state and the (samples, L, V) outputs
        check_memory(f"--verify's Jensen bound at L = {format_count(length)} with "
                     f"{args.samples} samples",
                     int_times(length, 8.0 * args.samples * (2 * lang.vocab_size + 6)),
                     argument="--samples or --length")


def _verify_bound(args, sched: Schedule, length: int) -> dict:
    from .metrics import jensen_bound
    from .theory.ngram import excess_monte_carlo

    name, lang = _verify_language(args)
    excess = excess_monte_carlo(sched, length, args.n, num_samples=args.samples, seed=args.seed,
                                progress=True)
    out = {"length": length, "samples": args.samples, "excess": excess.scaled(length),
           "excess_per_token": excess,
           "language": name if lang else "none (no Table 1 preset of this order)"}
    if lang is not None:
        jb = jensen_bound(lang, sched, length, args.samples, None, args.seed, progress=True)
        out["jensen_bound"] = jb
        out["jensen_bound_per_token"] = jb.scaled(1 / length)
    return out


def _add_bound(sub) -> None:
    p = sub.add_parser("bound", help="Lemma B.12 schedule and Theorem 4.2 TER guarantee",
                       description="Construct the Lemma B.12 schedule for an n-gram language and "
                                   "print its steps, minimum length and the TER guarantee.")
    p.add_argument("--n", type=_count(2), required=True, help="n-gram order (>= 2)")
    p.add_argument("--eps", type=float, required=True, help="epsilon in (0, 1)")
    p.add_argument("--vocab", type=_count(1), default=8, help="vocabulary size |V| (default 8)")
    p.add_argument("--schedule", choices=("paper", "adaptive"), default="paper",
                   help="paper = Schedule A (default), adaptive = Schedule B")
    p.add_argument("--length", type=_count(1), default=None, help="sequence length (>= L_0)")
    p.add_argument("--eps-learning", type=float, default=0.0,
                   help="Assumption 4.1's learning error in nats (default 0)")
    p.add_argument("--verify", action="store_true",
                   help="Monte-Carlo the excess and the Jensen KL bound on a Table 1 n-gram")
    p.add_argument("--samples", type=_count(2), default=None,
                   help="instances for --verify (default 4)")
    p.add_argument("--seed", type=_count(0), default=0)
    p.add_argument("--save", metavar="FILE",
                   help="write the schedule as a plan file (JSON) for --plan-file / load_plan")
    p.add_argument("--overwrite", action="store_true", help="let --save replace an existing file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bound)


# ------------------------------------------------------------------------------ verify


def _cmd_verify(args) -> int:
    import time

    from .verify import verify

    start = time.perf_counter()
    checks = verify(quick=args.quick, seed=args.seed, progress=True)
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
    p.add_argument("--seed", type=_count(0), default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_verify)


# ------------------------------------------------------------------------------ sweep


def _list(kind):
    """An argparse ``type``: comma-separated values, each parsed by ``kind``."""
    def parse(text: str) -> list:
        items = [item.strip() for item in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"must be comma-separated values, got {text!r}")
        return [kind(item) for item in items]

    parse.__name__ = "list"
    return parse


def _cmd_sweep(args) -> int:
    """A grid of Monte-Carlo cells (``mdm_exact.sweep``): the axes from the options, the table
    to ``--out DIR`` and a summary at the end."""
    from .sweep import Grid, run_sweep, summary_rows

    languages = (args.preset or []) + (args.language or [])
    if not languages:
        raise ArgumentError("give --preset NAME,... or --language FILE,...")
    plans = (args.schedule or []) + (args.policy or []) + (args.plan_file or [])
    if not plans:
        plans = ["linear"] if args.steps else []
    if not plans:
        raise ArgumentError("give --steps N,... (with --schedule), --policy SPEC,... or "
                            "--plan-file FILE,...")
    grid = Grid(language=languages, length=args.length, plan=plans, steps=args.steps or (),
                denoiser=args.denoiser, seed=args.seed)
    table = run_sweep(grid, args.samples, out=args.out, backend=args.backend,
                      workers=args.workers, scheduler=args.scheduler, timeout=args.timeout,
                      force=args.force, kl_samples=args.kl_samples, progress=True)
    if args.json:
        _print_json({"computed": table.attrs["computed"], "reused": table.attrs["reused"],
                     "out": args.out, "rows": table.astype(object).where(table.notna(), None)
                     .to_dict(orient="records")})
        return 0
    print(_table(summary_rows(table)))
    where = f"; table in {os.path.join(args.out, 'results.csv')}" if args.out else ""
    print(f"{len(table)} cells: {table.attrs['computed']} computed, {table.attrs['reused']} "
          f"reused{where}")
    return 0


def _add_sweep(sub) -> None:
    from .sweep import CONNECT_TIMEOUT

    p = sub.add_parser("sweep", help="a grid of Monte-Carlo runs as one table, resumable",
                       description="Run the Monte-Carlo sampler on every cell of a grid "
                                   "(languages x lengths x plans x steps x denoisers x seeds) "
                                   "and write one row per cell (docs/sweeps.md). Lists are "
                                   "comma-separated.")
    p.add_argument("--preset", type=_list(str), metavar="NAME,...",
                   help=f"Table 1 presets ({', '.join(sorted(PRESETS))}); NAME:THRESHOLD for "
                        "another pruning threshold (NAME:0 = unpruned)")
    p.add_argument("--language", type=_list(str), metavar="FILE,...",
                   help="language files (.json / .npz)")
    p.add_argument("--length", type=_list(_count(1)), required=True, metavar="L,...")
    p.add_argument("--schedule", type=_list(str), metavar="FAMILY,...",
                   help="linear, cosine, loglinear[:EPS], polynomial:A or fixed-count, with "
                        "--steps (default linear)")
    p.add_argument("--steps", type=_list(_count(1)), metavar="N,...",
                   help="numbers of steps of the --schedule families")
    p.add_argument("--policy", type=_list(str), metavar="SPEC,...",
                   help="adaptive unmasking policies, as simulate's --policy")
    p.add_argument("--plan-file", type=_list(str), metavar="FILE,...",
                   help="plan or policy files (docs/cli.md, plan files)")
    p.add_argument("--denoiser", type=_list(str), default=["oracle"], metavar="D,...",
                   help="oracle or perturbed:EPS (a PerturbedOracle, EPS nats per position)")
    p.add_argument("--seed", type=_list(_count(0)), default=[0], metavar="S,...")
    p.add_argument("--samples", type=_count(2), default=1000, help="Monte-Carlo samples per cell")
    p.add_argument("--kl-samples", type=_count(2), default=None, metavar="K",
                   help="draws of the exact-likelihood KL where it applies (default "
                        "min(samples, 100))")
    p.add_argument("--out", metavar="DIR",
                   help="directory of the cells, results.csv and the manifest; a rerun "
                        "computes only the missing cells")
    p.add_argument("--force", action="store_true",
                   help="run in an --out directory that holds another sweep")
    p.add_argument("--backend", choices=("local", "dask"), default="local")
    p.add_argument("--workers", type=_count(1), default=None,
                   help="processes (local pool or Dask LocalCluster; default: usable cores)")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="with --backend dask: an existing scheduler, e.g. tcp://HOST:8786")
    p.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT, metavar="SECONDS",
                   help=f"how long to wait for --scheduler (default {CONNECT_TIMEOUT:g})")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_sweep)


# ------------------------------------------------------------------------------ main


def _check_bound_args(args) -> None:
    if args.n < 2:
        raise ArgumentError(f"--n must be >= 2, got {args.n}")
    if not 0 < args.eps < 1:
        raise ArgumentError(f"--eps must lie in (0, 1), got {args.eps}")
    if args.vocab < 1:
        raise ArgumentError(f"--vocab must be >= 1, got {args.vocab}")
    if not (math.isfinite(args.eps_learning) and args.eps_learning >= 0):
        raise ArgumentError(f"--eps-learning must be a finite number >= 0, got "
                            f"{args.eps_learning}")
    if args.samples is not None and not args.verify:
        raise ArgumentError("--samples applies to --verify only")
    if args.samples is None:
        args.samples = 4


TORCH_VERBS = {
    "train": ("train a small MDM or AR transformer on a language (torch extra)",
              "add_train_arguments", "run_train"),
    "evaluate": ("measure a trained run against the exact language (torch extra)",
                 "add_evaluate_arguments", "run_evaluate"),
}


OPTIONAL_EXTRAS = {"torch": "pip install 'mdm_exact[torch]'",
                   "dask": "pip install 'dask[distributed]'",
                   "distributed": "pip install 'dask[distributed]'"}
"""Optional dependencies whose absence is a one-line hint rather than a traceback."""

EXIT_USAGE, EXIT_OUTPUT, EXIT_INTERRUPTED = 2, 1, 130


class _UsageError(Exception):
    """An argparse error, raised instead of argparse's exit so that ``main`` prints one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise _UsageError(f"{message} (see {self.prog} --help)")


def _add_torch_verbs(sub, command: str | None, full: bool) -> None:
    """``train`` / ``evaluate`` import torch, so their arguments are only built when the verb is
    used (or ``full``, for the documentation): ``mdm-exact bound`` stays fast."""
    for name, (help_text, add_name, run_name) in TORCH_VERBS.items():
        p = sub.add_parser(name, help=help_text, description=help_text.capitalize() + ".")
        if command != name and not full:
            continue
        try:
            from .nn import commands
        except ImportError:
            if command == name:
                raise  # ``main`` turns a missing torch into a one-line hint
            continue
        getattr(commands, add_name)(p)
        p.set_defaults(func=getattr(commands, run_name))


def _add_figure(sub) -> None:
    from .plotting import add_figure_arguments

    p = sub.add_parser("figure", help="render a figure of the paper with the exact oracle, or "
                                      "of trained runs beside it (learned --run DIR)")
    add_figure_arguments(p)


MAX_MEMORY_HELP = (f"memory budget of every computation, e.g. 8GiB (default 2GiB or "
                   f"${MEMORY_ENV}); allowed before or after the command")


def _verb(argv: Sequence[str]) -> str | None:
    """The command word of ``argv``: the first word that is neither an option nor the value of
    ``--max-memory``."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--max-memory":
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def build_parser(argv: Sequence[str] | None = None, *, full: bool = False
                 ) -> argparse.ArgumentParser:
    """The argparse parser; ``argv`` tells which verb will run (torch verbs are filled lazily),
    ``full=True`` fills every verb."""
    command = _verb(argv or [])
    parser = _Parser(
        prog="mdm-exact",
        description="Exact ground truth for masked diffusion language models (Feng et al., "
                    "arXiv 2502.09622).",
    )
    parser.add_argument("--version", action="version", version=f"mdm-exact {__version__}")
    parser.add_argument("--max-memory", type=_size, default=None, metavar="SIZE",
                        help=MAX_MEMORY_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_language(sub)
    _add_exact(sub)
    _add_simulate(sub)
    _add_ser(sub)
    _add_bound(sub)
    _add_steps(sub)
    _add_verify(sub)
    _add_figure(sub)
    _add_sweep(sub)
    _add_torch_verbs(sub, command, full)
    for verb in sub.choices.values():
        # SUPPRESS: a verb without the option leaves the value given before the verb alone.
        verb.add_argument("--max-memory", type=_size, default=argparse.SUPPRESS, metavar="SIZE",
                          help=MAX_MEMORY_HELP)
    return parser


def _error(message: str) -> None:
    print(f"mdm-exact: error: {message}", file=sys.stderr, flush=True)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _interrupted(err: BaseException) -> bool:
    """Whether ``err`` is Ctrl-C, possibly wrapped: numba turns a KeyboardInterrupt raised
    inside compiled code into ``SystemError: ... returned a result with an exception set``."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def _entered_from_compiled_code(frame) -> bool:
    """Whether ``frame`` is numba's Python code called directly from compiled code (numba frame,
    non-numba caller), e.g. ``_numba_unpickle`` inside a kernel: an exception raised there is
    not checked by the compiled caller and crashes the process."""
    numba = sys.modules.get("numba")
    if frame is None or numba is None or frame.f_back is None:
        return False
    root = os.path.dirname(numba.__file__) + os.sep
    return (frame.f_code.co_filename.startswith(root)
            and not frame.f_back.f_code.co_filename.startswith(root))


class _InterruptGuard:
    """SIGINT handler of a command: KeyboardInterrupt, except inside numba's Python code called
    back from a compiled kernel (``_numba_unpickle``), where a raise is not checked and crashes
    the process. There the interrupt is raised at the next call of a Python function outside
    numba (a one-shot ``sys.setprofile`` hook of the main thread), i.e. once the kernel has
    returned; the hook is removed when the command ends."""

    def handle(self, signum, frame) -> None:
        if not _entered_from_compiled_code(frame):
            raise KeyboardInterrupt
        sys.setprofile(self._raise_outside_numba)

    @staticmethod
    def _raise_outside_numba(frame, event, arg) -> None:
        numba = sys.modules.get("numba")
        root = os.path.dirname(numba.__file__) + os.sep if numba else None
        if event == "call" and not (root and frame.f_code.co_filename.startswith(root)):
            sys.setprofile(None)
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self):
        """The handler for the block (main thread only; the default one restored after)."""
        import threading

        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield
            return
        signal.signal(signal.SIGINT, self.handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if sys.getprofile() is self._raise_outside_numba:
                sys.setprofile(None)


def _interrupted_exit() -> int:
    """Report Ctrl-C and return 130. CPython remembers a KeyboardInterrupt that escaped code run
    through ``PyRun_*`` (as happens inside numba's machinery) and ``python -m`` would then die by
    SIGINT after returning; running an empty string through the public ``PyRun_SimpleString``
    clears that flag."""
    print("mdm-exact: interrupted", file=sys.stderr, flush=True)
    try:
        import ctypes

        ctypes.pythonapi.PyRun_SimpleString(b"")
    except (ImportError, AttributeError, OSError):
        pass
    return EXIT_INTERRUPTED


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of the unwritable
    stream raises nothing (the Python documentation's recipe for SIGPIPE)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _run(argv: list[str]) -> int:
    args = build_parser(argv).parse_args(argv)
    saved = os.environ.get(MEMORY_ENV)
    if args.max_memory is not None:
        os.environ[MEMORY_ENV] = repr(args.max_memory)
    try:
        if args.command == "bound":
            _check_bound_args(args)
        with _InterruptGuard().installed():
            status = int(args.func(args) or 0)
        sys.stdout.flush()
        return status
    finally:
        if saved is None:
            os.environ.pop(MEMORY_ENV, None)
        else:
            os.environ[MEMORY_ENV] = saved


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mdm-exact`` with ``argv`` (default: sys.argv); returns the exit status.

    Only the library's refusals (``MdmExactError``), argparse errors and a missing optional
    extra become one-line errors (status 2); any other exception is a bug and propagates."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(argv)
    except (_UsageError, MdmExactError) as err:
        _error(_first_line(err))
        return EXIT_USAGE
    except ImportError as err:
        if err.name not in OPTIONAL_EXTRAS:
            raise
        _error(f"this command needs the optional dependency {err.name!r}: "
               f"{OPTIONAL_EXTRAS[err.name]}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return _interrupted_exit()
    except SystemError as err:
        if not _interrupted(err):
            raise
        return _interrupted_exit()
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OUTPUT
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        _silence_stdout()
        _error(f"cannot write the output: {os.strerror(err.errno)}")
        return EXIT_OUTPUT


if __name__ == "__main__":
    sys.exit(main())
