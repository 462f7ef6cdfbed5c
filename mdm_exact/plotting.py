"""Figures of the paper's results, computed with the exact oracle (matplotlib, imported lazily).

``import mdm_exact`` never imports this module, and importing this module does not import
matplotlib either: the figure functions do, on first call. Each figure comes in two parts:

- a ``*_data`` function that computes the numbers (a frozen dataclass of arrays, no matplotlib);
- a figure function that draws them and returns a ``matplotlib.figure.Figure`` (not attached to
  pyplot, so nothing leaks in long sessions; save it with ``fig.savefig(path)``).

Every figure function takes ``quick``: ``False`` reproduces the paper's setting (minutes to tens
of minutes on a laptop), ``True`` a reduced version that runs in seconds (used by the tests and
the examples). Quantities are in nats; perplexities are ``exp`` of nats per token.

``FIGURES`` maps the names of ``mdm-exact figure NAME`` to the figure functions;
``add_figure_arguments`` / ``run_figure`` implement that command. ``figure_learned`` (``mdm-exact
figure learned --run DIR``) draws trained runs from the results JSON of ``mdm-exact evaluate``
instead of computing.
"""

from __future__ import annotations

import argparse
import inspect
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._io import output_file, write_atomic
from ._utils import check_memory, progress_bar
from .errors import ArgumentError, ArgumentTypeError
from .languages import NGram, preset
from .schedules import Schedule

CONFIDENCE = 0.95
"""Confidence level of every band drawn."""

TABLE1 = ("2-gram", "3-gram", "4-gram", "hmm")
"""The Table 1 languages of Fig. 1 (``mdm_exact.preset`` names)."""


def _figure(ncols: int, width: float = 5.2, height: float = 4.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _steps_axes(axes, steps, x_ar: float, legend_size: float) -> None:
    """The shared x axis of the steps-vs-quality figures: N on a log2 scale with one tick per
    ``steps`` value and an "AR" tick at ``x_ar``; grid and legend."""
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks([*steps, x_ar], [str(int(n)) for n in steps] + ["AR"])
        ax.minorticks_off()
        ax.set_xlabel("sampling steps N (log scale)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=legend_size)


def _parameters(fig, text: str) -> None:
    """State the figure's parameters at its foot, in small type (as the figure's supxlabel, so
    that the constrained layout makes room for it)."""
    width = int(fig.get_figwidth() * 15)
    fig.supxlabel("\n".join(textwrap.wrap("Parameters: " + text, width)), fontsize=8)


_SCHEDULE_TEXT = {"linear": "linear (alpha_t = 1 - t)",
                  "cosine": "cosine (alpha_t = cos(pi t / 2))"}


def _powers_of_two(low: int, high: int) -> list[int]:
    out = []
    n = low
    while n < high:
        out.append(n)
        n *= 2
    out.append(high)
    return out


def _data(compute: Callable, quick: bool, data, kwargs: dict):
    """``data`` if given (then no computing option may be passed), else ``compute(...)``."""
    if data is None:
        return compute(quick=quick, **kwargs)
    if kwargs:
        raise ArgumentTypeError(f"pass either data or the options of {compute.__name__}, got both "
                        f"(options {sorted(kwargs)})")
    return data


# ------------------------------------------------------------------------------ Fig. 1


@dataclass(frozen=True)
class Fig1Data:
    """Numbers of ``figure_1``: for each language (rows, in ``languages`` order) and each number
    of steps (columns, ``steps``), Monte-Carlo estimates with ``CONFIDENCE`` intervals.

    ``gen_ppl``, ``gen_ppl_low``, ``gen_ppl_high``: (languages, steps) generative perplexity
    exp(E_p[-log q(x)] / L) of the oracle sampler on the unpruned (threshold 0) language;
    ``ser``, ``ser_low``, ``ser_high``: (languages, steps) SER (eq. 5) on the pruned language;
    ``ar_gen_ppl``, ``ar_gen_ppl_low``, ``ar_gen_ppl_high``: (languages,) the autoregressive value
    exp(H(q) / L) (exact for n-grams, Monte Carlo for HMMs); the AR SER is 0 exactly.
    """

    languages: tuple[str, ...]
    steps: tuple[int, ...]
    length: int
    num_samples: int
    schedule: str
    seed: int
    gen_ppl: np.ndarray
    gen_ppl_low: np.ndarray
    gen_ppl_high: np.ndarray
    ser: np.ndarray
    ser_low: np.ndarray
    ser_high: np.ndarray
    ar_gen_ppl: np.ndarray
    ar_gen_ppl_low: np.ndarray
    ar_gen_ppl_high: np.ndarray


def figure_1_data(
    *,
    quick: bool = False,
    length: int | None = None,
    steps: Sequence[int] | None = None,
    num_samples: int | None = None,
    languages: Sequence[str] = TABLE1,
    schedule: str = "linear",
    seed: int = 0,
    progress: bool = False,
) -> Fig1Data:
    """The paper's Fig. 1 with the exact oracle: GenPPL and SER against the number of steps N.

    For each Table 1 language and each N, ``num_samples`` sequences of length L are drawn with
    ``mdm_exact.sampling.sample`` (the ``Oracle`` denoiser, ``Schedule.named(schedule, N)``) and
    scored with ``metrics.generative_perplexity`` (on ``preset(name, threshold=0)``, so that the
    perplexity is finite) and ``metrics.sequence_error_rate`` (on the pruned ``preset(name)``).
    The AR reference is the oracle with N = L and ``DeterministicPlan.left_to_right(L)``, which
    draws exactly from q: its SER is 0 and its GenPPL is exp(H(q) / L).

    Defaults: L = 512, N = 8, 16, ..., L, 64 samples; ``quick``: L = 32, 32 samples. Refused
    before any work when the samples of one point, with the (samples, L, V) probabilities the
    sampler forms, would exceed the memory budget. ``progress``: a tqdm bar over the points on
    stderr.
    """
    from .metrics import generative_perplexity, sequence_error_rate
    from .sampling import sample

    length = (32 if quick else 512) if length is None else int(length)
    num = (32 if quick else 64) if num_samples is None else int(num_samples)
    if length < 1 or num < 2:
        raise ArgumentError(f"length must be >= 1 and num_samples >= 2, got {length}, {num}")
    ns = tuple(_powers_of_two(8, length) if steps is None else (int(n) for n in steps))
    if not ns or min(ns) < 1 or max(ns) > length:
        raise ArgumentError(f"steps must lie in [1, length={length}], got {ns}")
    names = tuple(languages)
    vocab = max(preset(name).vocab_size for name in names)
    check_memory(f"figure 1 (length={length}, num_samples={num})",
                 4.0 * num * length * (8.0 * vocab + 32.0) + 32.0 * (max(ns) + 1),
                 argument="length or num_samples")
    shape = (len(names), len(ns))
    gp, gp_lo, gp_hi, ser, ser_lo, ser_hi = (np.empty(shape) for _ in range(6))
    ar, ar_lo, ar_hi = (np.empty(len(names)) for _ in range(3))
    bar = progress_bar(progress, total=len(names) * (len(ns) + 1), desc="figure 1")
    for i, name in enumerate(names):
        pruned = preset(name)
        full = preset(name, threshold=0)
        for j, n in enumerate(ns):
            plan = Schedule.named(schedule, n)
            res = sample(full, plan, length, num, rng=np.random.default_rng([seed, i, n, 0]))
            est = generative_perplexity(full, res.tokens, CONFIDENCE)
            gp[i, j], gp_lo[i, j], gp_hi[i, j] = est.value, est.low, est.high
            res = sample(pruned, plan, length, num, rng=np.random.default_rng([seed, i, n, 1]))
            est = sequence_error_rate(pruned, res.tokens, CONFIDENCE)
            ser[i, j], ser_lo[i, j], ser_hi[i, j] = est.value, est.low, est.high
            bar.update(1)
        ar[i], ar_lo[i], ar_hi[i] = _ar_gen_ppl(full, length, num,
                                                np.random.default_rng([seed, i, 0, 2]))
        bar.update(1)
    bar.close()
    return Fig1Data(names, ns, length, num, schedule, seed, gp, gp_lo, gp_hi, ser, ser_lo,
                    ser_hi, ar, ar_lo, ar_hi)


def _ar_gen_ppl(full, length: int, num: int, rng) -> tuple[float, float, float]:
    """(value, low, high) of the AR oracle's GenPPL exp(H(q) / L): exact for an n-gram, else
    Monte Carlo over 4 ``num`` draws of q (sampling q is exactly what the AR oracle does; HMM
    entropy has no closed form)."""
    from .metrics import generative_perplexity

    if isinstance(full, NGram):
        value = math.exp(full.entropy(length).value / length)
        return value, value, value
    est = generative_perplexity(full, full.sample(4 * num, length, rng), CONFIDENCE)
    return est.value, est.low, est.high


def _single(table, column: str):
    values = table[column].dropna().unique()
    if len(values) != 1:
        raise ArgumentError(f"table column {column!r} must hold one value for figure 1, got "
                            f"{sorted(map(str, values))} (select rows first, e.g. "
                            f"table[table.{column} == ...])")
    return values[0]


def figure_1_data_from_table(table) -> Fig1Data:
    """``Fig1Data`` from a sweep table (``mdm_exact.sweep.run_sweep``, ``load_results``): one
    line per language (preset or file; ``NAME:0`` rows, the unpruned variant, give its GenPPL
    = exp(gen_log_ppl) where present, the other rows its SER), one point per ``steps``. The
    table must hold one length, plan family, denoiser, seed and sample count, and every
    language every steps value; the AR point is computed as in ``figure_1_data``."""
    from .sweep import split_language, sweep_language

    needed = {"language", "length", "plan", "steps", "denoiser", "seed", "samples", "ser",
              "ser_low", "ser_high", "gen_log_ppl", "gen_log_ppl_low", "gen_log_ppl_high"}
    missing = sorted(needed - set(table.columns))
    if missing:
        raise ArgumentError(f"table lacks the columns {missing} of a sweep table")
    length, plan, seed, num = (int(_single(table, "length")), str(_single(table, "plan")),
                               int(_single(table, "seed")), int(_single(table, "samples")))
    _single(table, "denoiser")
    steps = tuple(sorted(int(n) for n in table["steps"].dropna().unique()))
    if not steps:
        raise ArgumentError("table has no steps values (figure 1 needs a schedule family)")
    labels = list(dict.fromkeys(table["language"]))
    names = list(dict.fromkeys(split_language(label)[0] for label in labels))
    shape = (len(names), len(steps))
    out = {key: np.empty(shape) for key in ("gp", "gp_lo", "gp_hi", "ser", "ser_lo", "ser_hi")}
    ar = np.empty((3, len(names)))
    for i, name in enumerate(names):
        unpruned = f"{name}:0" if f"{name}:0" in labels else None
        pruned = next((lb for lb in labels if split_language(lb) == (name, None)), unpruned)
        for label, keys, column, transform in (
                (pruned, ("ser", "ser_lo", "ser_hi"), "ser", float),
                (unpruned or pruned, ("gp", "gp_lo", "gp_hi"), "gen_log_ppl", math.exp)):
            rows = table[table["language"] == label].set_index("steps")
            absent = [n for n in steps if n not in rows.index]
            if absent:
                raise ArgumentError(f"table has no row for language {label!r} at steps {absent}")
            for j, n in enumerate(steps):
                row = rows.loc[n]
                for key, suffix in zip(keys, ("", "_low", "_high"), strict=True):
                    out[key][i, j] = transform(float(row[column + suffix]))
        full = sweep_language(unpruned or pruned)
        ar[:, i] = _ar_gen_ppl(full, length, num, np.random.default_rng([seed, i, 0, 2]))
    return Fig1Data(tuple(names), steps, length, num, plan, seed, out["gp"], out["gp_lo"],
                    out["gp_hi"], out["ser"], out["ser_lo"], out["ser_hi"], *ar)


def figure_1(*, quick: bool = False, data=None, **kwargs):
    """Fig. 1 with the exact oracle: generative perplexity (left) and SER (right) against the
    number of sampling steps N (log axis), one line per Table 1 language with its 95% band, and
    the autoregressive value (N = L, left to right) as the last point.

    ``kwargs`` go to ``figure_1_data`` (``length``, ``steps``, ``num_samples``, ``languages``,
    ``schedule``, ``seed``); pass ``data`` to draw precomputed numbers: a ``Fig1Data`` or a
    sweep table (``figure_1_data_from_table``). Returns a Figure with 2 axes.
    """
    if data is not None and not isinstance(data, Fig1Data):
        data = figure_1_data_from_table(data)
    d = _data(figure_1_data, quick, data, kwargs)
    fig, (ax_ppl, ax_ser) = _figure(2, width=5.6, height=4.6)
    x = np.asarray(d.steps, dtype=float)
    x_ar = 2.0 * x[-1]
    for i, name in enumerate(d.languages):
        color = f"C{i}"
        ax_ppl.plot(x, d.gen_ppl[i], "o-", color=color, label=name)
        ax_ppl.fill_between(x, d.gen_ppl_low[i], d.gen_ppl_high[i], color=color, alpha=0.2)
        ax_ppl.errorbar([x_ar], [d.ar_gen_ppl[i]],
                        yerr=[[d.ar_gen_ppl[i] - d.ar_gen_ppl_low[i]],
                              [d.ar_gen_ppl_high[i] - d.ar_gen_ppl[i]]],
                        fmt="*", ms=12, color=color)
        ax_ppl.plot([x[-1], x_ar], [d.gen_ppl[i, -1], d.ar_gen_ppl[i]], ":", color=color)
        ax_ser.plot(x, d.ser[i], "o-", color=color, label=name)
        ax_ser.fill_between(x, d.ser_low[i], d.ser_high[i], color=color, alpha=0.2)
        ax_ser.plot([x[-1], x_ar], [d.ser[i, -1], 0.0], ":", color=color)
    ax_ser.plot([x_ar], [0.0], "k*", ms=12, label="AR (oracle, N = L, left to right)")
    ax_ppl.plot([], [], "k*", ms=12, label="AR (oracle, N = L, left to right)")
    ax_ppl.fill_between([], [], [], color="gray", alpha=0.2, label="95% interval")
    ax_ser.fill_between([], [], [], color="gray", alpha=0.2, label="95% Wilson interval")
    _steps_axes((ax_ppl, ax_ser), x, x_ar, 7)
    ax_ppl.set_ylabel("GenPPL = exp(E_p[-log q(x)] / L)  (exp of nats/token)")
    ax_ppl.set_title("Generative perplexity (threshold-0 languages)")
    ax_ser.set_ylabel("SER = 1 - p(supp q)  (probability)")
    ax_ser.set_title("Sequence error rate (pruned languages)")
    ax_ser.set_ylim(-0.03, 1.03)
    fig.suptitle("Fig. 1 with the exact oracle: quality vs number of sampling steps")
    _parameters(fig, (
        f"L = {d.length}, schedule {_SCHEDULE_TEXT.get(d.schedule, d.schedule)}, exact oracle "
        f"denoiser, {d.num_samples} samples per point, seed {d.seed}, Table 1 languages "
        f"(preset seed 0, V = 8); bands: {CONFIDENCE:.0%} t interval (GenPPL) and Wilson "
        "interval (SER); AR GenPPL = exp(H(q)/L) (exact for n-grams, Monte Carlo for the HMM)."
    ))
    return fig


# ------------------------------------------------------------------------------ Theorem 4.4


@dataclass(frozen=True)
class Theorem44Data:
    """Numbers of ``figure_theorem_4_4`` (Example C.7, interval l, linear schedule).

    ``ratios``: (R,) requested N / L; ``ser``: (lengths, R) exact oracle SER at N = round(ratio
    L); ``c6_bound``: (lengths, R) Lemma C.6's lower bound (paper form) at the same N with the
    oracle's p_e = 1/2; ``c9_bound``: (R,) Theorem C.9's explicit bound with p_e = 63/128 at the
    largest length; ``limit``: (R,) the L -> infinity oracle SER 1 - exp(-(l-1) / (4 C));
    ``min_steps``: (M,) smallest N with exact SER <= ``target`` at ``min_lengths``;
    ``min_steps_c6``: (M,) smallest N that Lemma C.6 does not rule out (no schedule does better).
    """

    interval: int
    lengths: tuple[int, ...]
    ratios: np.ndarray
    ser: np.ndarray
    c6_bound: np.ndarray
    c9_bound: np.ndarray
    limit: np.ndarray
    target: float
    min_lengths: tuple[int, ...]
    min_steps: np.ndarray
    min_steps_c6: np.ndarray


def figure_theorem_4_4_data(
    *,
    quick: bool = False,
    interval: int = 5,
    lengths: Sequence[int] | None = None,
    target: float = 0.1,
    min_lengths: Sequence[int] | None = None,
    progress: bool = False,
) -> Theorem44Data:
    """Theorem 4.4 / Example C.7: exact oracle SER (``theory.interval.oracle_ser``, linear
    schedule, p_e = 1/2) against N / L for several L, beside the Lemma C.6 (``ser_lower_bound``)
    and Theorem C.9 (``theorem_c9_bound``) lower bounds, and the smallest N reaching SER <=
    ``target`` (``min_steps_for_ser``) against L. All exact; no sampling.

    Defaults: L = 50, 500, 5000, 50000 and 9 lengths from 50 to 10^5 for the minimum N;
    ``quick``: 3 lengths and 5 lengths up to 5000. ``progress``: a tqdm bar over the points on
    stderr.
    """
    from .theory.interval import (
        min_steps_for_ser,
        min_steps_lower_bound,
        oracle_ser,
        ser_lower_bound,
        theorem_c9_bound,
    )

    ell = int(interval)
    if lengths is None:
        lengths = (10 * ell, 100 * ell, 1000 * ell) if quick else (
            10 * ell, 100 * ell, 1000 * ell, 10000 * ell)
    if min_lengths is None:
        min_lengths = (10 * ell, 40 * ell, 100 * ell, 400 * ell, 1000 * ell) if quick else (
            10 * ell, 20 * ell, 40 * ell, 100 * ell, 200 * ell, 400 * ell, 1000 * ell,
            4000 * ell, 20000 * ell)
    lengths, min_lengths = tuple(int(n) for n in lengths), tuple(int(n) for n in min_lengths)
    ratios = np.geomspace(0.05, 20.0, 25 if quick else 49)
    ser = np.empty((len(lengths), ratios.size))
    c6 = np.empty_like(ser)
    bar = progress_bar(progress, total=ser.size + len(min_lengths), desc="theorem 4.4")
    for i, length in enumerate(lengths):
        for j, ratio in enumerate(ratios):
            n = max(1, round(ratio * length))
            # Equal masses 1/N form one run: O(l^2 log N) however large N is.
            ser[i, j] = oracle_ser(np.full(n, 1.0 / n), ell, length)
            c6[i, j] = ser_lower_bound(n, ell, length, 0.5)
            bar.update()
    big = lengths[-1]
    c9 = np.array([theorem_c9_bound(r, big, 63 / 128, ell) for r in ratios])
    limit = -np.expm1(-(ell - 1) / (4.0 * ratios))
    mins = np.empty(len(min_lengths))
    for i, length in enumerate(min_lengths):
        mins[i] = min_steps_for_ser(ell, length, target)
        bar.update()
    bar.close()
    mins_c6 = np.array([min_steps_lower_bound(ell, n, target, p_e=0.5) for n in min_lengths],
                       dtype=float)
    return Theorem44Data(ell, lengths, ratios, ser, c6, c9, limit, float(target), min_lengths,
                         mins, mins_c6)


def figure_theorem_4_4(*, quick: bool = False, data: Theorem44Data | None = None, **kwargs):
    """Theorem 4.4 / Example C.7: exact SER against N / L for several L (the curves collapse onto
    1 - exp(-(l-1)/(4 N/L))), with the Lemma C.6 and Theorem C.9 lower bounds (left); the
    smallest N with SER <= 0.1 against L, linear in L (right). Returns a Figure with 2 axes.

    ``kwargs`` go to ``figure_theorem_4_4_data``; pass ``data`` to draw precomputed numbers.
    """
    d = _data(figure_theorem_4_4_data, quick, data, kwargs)
    fig, (ax, ax_min) = _figure(2)
    for i, length in enumerate(d.lengths):
        color = f"C{i}"
        ax.plot(d.ratios, d.ser[i], "-", color=color, lw=2, alpha=0.8,
                label=f"exact oracle SER, L = {length}")
        ax.plot(d.ratios, d.c6_bound[i], "--", color=color, lw=1,
                label="Lemma C.6 lower bound (p_e = 1/2), each L" if i == 0 else None)
    ax.plot(d.ratios, d.limit, "k:", lw=1.5, label="L -> inf limit 1 - exp(-(l-1) L / (4N))")
    ax.plot(d.ratios, d.c9_bound, "k-.", lw=1.5,
            label=f"Theorem C.9 bound (p_e = 63/128), L = {d.lengths[-1]}")
    ax.axhline(0.5, color="gray", lw=0.8)
    ax.axvline(0.5, color="gray", lw=0.8)
    ax.annotate("Thm 4.4: N <= L/2  =>  SER >= 1/2", (0.5, 0.5), xytext=(0.055, 0.12),
                fontsize=8, color="dimgray", arrowprops={"arrowstyle": "->", "color": "gray"})
    ax.set_xscale("log")
    ax.set_xlabel("steps per token N / L (log scale)")
    ax.set_ylabel("sequence error rate (probability)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Exact SER vs N/L (interval l = {d.interval}, |V| = {2 ** (d.interval - 1)})")
    ax.legend(fontsize=7, loc="upper right", framealpha=0.9)
    ax.grid(alpha=0.3)

    lens = np.asarray(d.min_lengths, dtype=float)
    slope = float(np.sum(d.min_steps * lens) / np.sum(lens * lens))
    slope_c6 = float(np.sum(d.min_steps_c6 * lens) / np.sum(lens * lens))
    ax_min.plot(lens, d.min_steps, "o", color="C0",
                label=f"exact: smallest N with SER <= {d.target:g} (linear schedule)")
    ax_min.plot(lens, slope * lens, "-", color="C0", lw=1, label=f"fit N = {slope:.3g} L")
    ax_min.plot(lens, d.min_steps_c6, "s", color="C3", mfc="none",
                label=f"Lemma C.6 (oracle, any schedule): SER > {d.target:g} below this N")
    ax_min.plot(lens, slope_c6 * lens, "--", color="C3", lw=1, label=f"fit N = {slope_c6:.3g} L")
    ax_min.set_xscale("log")
    ax_min.set_yscale("log")
    ax_min.set_xlabel("sequence length L (tokens, log scale)")
    ax_min.set_ylabel(f"steps N needed for SER <= {d.target:g} (log scale)")
    ax_min.set_title("Steps needed grow linearly in L")
    ax_min.legend(fontsize=7, loc="upper left")
    ax_min.grid(alpha=0.3, which="both")
    fig.suptitle("Theorem 4.4 / Example C.7: SER of parallel sampling needs N proportional to L")
    _parameters(fig, (
        f"Interval-parity language (Example C.7), l = {d.interval}; exact oracle (same-step pairs "
        f"err with p_e = 1/2), linear schedule with N = round((N/L) L) equal masses; lengths "
        f"{', '.join(str(n) for n in d.lengths)}; no sampling: every value is exact."
    ))
    return fig


# ------------------------------------------------------------------------------ Theorem 4.2


@dataclass(frozen=True)
class Theorem42Data:
    """Numbers of ``figure_theorem_4_2`` (nats; every KL is per token).

    ``schedules``: {"A": Schedule, "B": Schedule} of Lemma B.12; ``exact_lengths``: tiny L with
    exact ``exact_kl`` = KL(q || p) / L and ``exact_jensen`` = E_tau KL(q || p_tau) / L (Lemma B.2);
    ``lengths``: larger L with the Monte-Carlo Jensen bound ``mc_jensen`` (and ``_low``/``_high``);
    ``b9``: Lemma B.9's E[D_tau] log|V| / L from the Monte-Carlo excess (with interval);
    ``b11``: the analytic Lemma B.11/B.12 bound on it; ``li_cai``: Li & Cai's bound (step sizes
    averaged over the schedule, information profile by Monte Carlo); ``theorem``: 4 eps log|V|,
    Theorem 4.2's guarantee for L >= ``min_length``; ``kl_lengths``: L with the true KL(q || p) / L
    ``true_kl`` (exact log q(x) - log p(x) per sample by the interval DP, mean of ``kl_samples``
    draws x ~ q, with interval) and the lower bound -log(1 - SER) / L ``ser_lower`` (SER from
    ``num_samples`` sampled sequences, Wilson interval carried through).
    """

    n: int
    eps: float
    language: str
    vocab_size: int
    schedules: dict
    exact_lengths: tuple[int, ...]
    exact_kl: np.ndarray
    exact_jensen: np.ndarray
    lengths: tuple[int, ...]
    mc_jensen: np.ndarray
    mc_jensen_low: np.ndarray
    mc_jensen_high: np.ndarray
    b9: np.ndarray
    b9_low: np.ndarray
    b9_high: np.ndarray
    b11: np.ndarray
    li_cai: np.ndarray
    theorem: float
    min_length: int
    num_samples: int
    information_samples: int
    seed: int
    kl_lengths: tuple[int, ...] = ()
    true_kl: np.ndarray = field(default_factory=lambda: np.empty(0))
    true_kl_low: np.ndarray = field(default_factory=lambda: np.empty(0))
    true_kl_high: np.ndarray = field(default_factory=lambda: np.empty(0))
    ser_lower: np.ndarray = field(default_factory=lambda: np.empty(0))
    ser_lower_low: np.ndarray = field(default_factory=lambda: np.empty(0))
    ser_lower_high: np.ndarray = field(default_factory=lambda: np.empty(0))
    kl_samples: int = 0


def _li_cai_average(information: float, schedule: Schedule, length: int,
                    rng: np.random.Generator) -> float:
    """Li & Cai's bound (nats per sequence) averaged over 400 instances of ``schedule``: given
    the step sizes, the positions are uniformly random, which is their setting."""
    from .theory.literature import li_cai_bound

    steps = schedule.draw_steps(400, length, rng)
    s_max = [int(np.bincount(row).max()) for row in steps]
    return float(np.mean([li_cai_bound(max(information, 0.0), length, s) for s in s_max]))


def figure_theorem_4_2_data(
    *,
    quick: bool = False,
    n: int = 2,
    eps: float = 0.2,
    exact_lengths: Sequence[int] | None = None,
    lengths: Sequence[int] | None = None,
    num_samples: int | None = None,
    information_samples: int | None = None,
    kl_lengths: Sequence[int] | None = None,
    kl_samples: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> Theorem42Data:
    """Theorem 4.2 / Lemma B.12 on the Table 1 ``n``-gram with the exact oracle
    (eps_learning = 0) and Schedule A (``Schedule.paper_ngram(n, eps)``, N fixed):

    - exact KL(q || p) / L and E_tau KL(q || p_tau) / L at tiny L (``exact_metrics``);
    - the unbiased Monte-Carlo E_tau KL(q || p_tau) / L at larger L (``jensen_bound``);
    - Lemma B.9's bound E[D_tau] log|V| / L (``theory.ngram.excess_monte_carlo``) and its
      analytic bound (``excess_bound_per_token``), Li & Cai's bound (``li_cai_bound`` with
      ``mutual_information_profile``) and Theorem 4.2's 4 eps log|V| (``ter_bound``);
    - the true KL(q || p) / L at ``kl_lengths`` (``likelihood.kl_estimate``: exact log p(x) per
      sample by the interval DP, ``kl_samples`` draws) and the lower bound -log(1 - SER) / L
      (``likelihood.ser_kl_lower_bound``).

    Defaults: exact L = 2..5, L = 8, 16, ..., 1024, 256 samples for the Jensen bound and the
    excess, 16 for the information profile (whose cost grows like L^2), true KL at L = 8, ...,
    256 with 32 samples (its cost grows like N L^4: about a minute at L = 256 on two cores);
    ``quick``: exact L = 2, 3, L = 8, 16, 32, 64, 64 and 8 samples, true KL at L = 8, 16 with 8
    samples. ``progress``: one tqdm bar over every point (each L of each part) on stderr.
    """
    from .exact import exact_metrics
    from .likelihood import kl_estimate, ser_kl_lower_bound
    from .metrics import jensen_bound, sequence_error_rate
    from .sampling import sample
    from .theory.literature import mutual_information_profile
    from .theory.ngram import excess_bound_per_token, excess_monte_carlo, min_length, ter_bound

    name = f"{n}-gram"
    language = preset(name)
    v = language.vocab_size
    sched_a, sched_b = Schedule.paper_ngram(n, eps), Schedule.adaptive_ngram(n, eps)
    if exact_lengths is None:
        exact_lengths = (2, 3) if quick else (2, 3, 4, 5)
    if lengths is None:
        lengths = (8, 16, 32, 64) if quick else tuple(2**k for k in range(3, 11))
    num = (64 if quick else 256) if num_samples is None else int(num_samples)
    num_info = (8 if quick else 16) if information_samples is None else int(information_samples)
    exact_lengths, lengths = tuple(int(x) for x in exact_lengths), tuple(int(x) for x in lengths)
    if kl_lengths is None:
        kl_lengths = (8, 16) if quick else tuple(2**k for k in range(3, 9))
    kl_lengths = tuple(int(x) for x in kl_lengths)
    if lengths and num >= 1:
        check_memory(f"figure theorem-4.2 (length={max(lengths)}, num_samples={num})",
                     4.0 * max(num, num_info) * max(lengths) * (8.0 * v + 32.0),
                     argument="lengths or num_samples")
    bar = progress_bar(progress, total=len(exact_lengths) + len(lengths) + len(kl_lengths),
                       desc="theorem 4.2")
    ex_kl, ex_j = np.empty(len(exact_lengths)), np.empty(len(exact_lengths))
    for i, length in enumerate(exact_lengths):
        bar.set_postfix_str(f"exact L={length}", refresh=False)
        m = exact_metrics(language, sched_a, length)
        ex_kl[i], ex_j[i] = m.kl / length, m.jensen_bound / length
        bar.update()
    rows = []
    for i, length in enumerate(lengths):
        bar.set_postfix_str(f"bounds L={length}", refresh=False)
        rng = np.random.default_rng([seed, i])
        jb = jensen_bound(language, sched_a, length, num, rng=rng)
        ex = excess_monte_carlo(sched_a, length, n, num_samples=max(num, 2), seed=rng)
        mi = mutual_information_profile(language, length, method="monte-carlo",
                                         num_samples=num_info, seed=rng)
        li_cai = _li_cai_average(mi.total.value, sched_a, length, rng) / length
        rows.append((jb.value / length, jb.low / length, jb.high / length,
                     ex.value * math.log(v), ex.low * math.log(v), ex.high * math.log(v),
                     excess_bound_per_token(sched_a, length, n) * math.log(v), li_cai))
        bar.update()
    cols = np.array(rows).T if rows else np.empty((8, 0))
    kl_num = (8 if quick else 32) if kl_samples is None else int(kl_samples)
    true_rows = []
    for i, length in enumerate(kl_lengths):
        bar.set_postfix_str(f"true KL L={length}", refresh=False)
        rng = np.random.default_rng([seed, len(lengths) + i])
        kl = kl_estimate(language, sched_a, length, kl_num, rng=rng).kl_per_token
        ser = sequence_error_rate(language, sample(language, sched_a, length, num, rng=rng).tokens)
        low = ser_kl_lower_bound(ser).scaled(1.0 / length)
        true_rows.append((kl.value, kl.low, kl.high, low.value, low.low, low.high))
        bar.update()
    bar.close()
    true_cols = np.array(true_rows).T if true_rows else np.empty((6, 0))
    theorem = ter_bound(n, eps, v, 0.0).log_ter_gap_bound
    return Theorem42Data(
        n, float(eps), name, v, {"A": sched_a, "B": sched_b}, exact_lengths, ex_kl, ex_j,
        lengths, *cols, theorem, min_length(n, eps), num, num_info, seed, kl_lengths,
        *true_cols, kl_num,
    )


def figure_theorem_4_2(*, quick: bool = False, data: Theorem42Data | None = None, **kwargs):
    """Theorem 4.2 / Lemma B.12: the two B.12 schedules as alpha_t (left) and as step masses
    p^(k) (middle), and the KL per token against L at fixed N (right): exact values at tiny L,
    Monte-Carlo values beyond, flat in L, under Lemma B.9's bound, Li & Cai's bound and
    Theorem 4.2's 4 eps log|V|. Returns a Figure with 3 axes.

    ``kwargs`` go to ``figure_theorem_4_2_data``; pass ``data`` to draw precomputed numbers.
    """
    d = _data(figure_theorem_4_2_data, quick, data, kwargs)
    fig, (ax_alpha, ax_mass, ax_kl) = _figure(3, width=5.0, height=4.6)
    labels = {"A": "Schedule A (paper_ngram)", "B": "Schedule B (adaptive_ngram)"}
    for k, (key, sched) in enumerate(d.schedules.items()):
        t = np.arange(sched.num_steps + 1) / sched.num_steps
        ax_alpha.plot(t, sched.alphas, color=f"C{k}", label=f"{labels[key]}, N = {sched.num_steps}")
        ax_mass.plot(np.arange(1, sched.num_steps + 1), sched.masses, ".-", ms=3,
                     color=f"C{k}", label=f"{labels[key]}, N = {sched.num_steps}")
    ax_alpha.set_xlabel("time t (t_i = i / N)")
    ax_alpha.set_ylabel("alpha_t = P(position still unmasked)  (probability)")
    ax_alpha.set_title("Lemma B.12 schedules: alpha_t")
    ax_mass.set_yscale("log")
    ax_mass.set_xlabel("generation step k (1 = first executed)")
    ax_mass.set_ylabel("mass p^(k) = P(revealed at step k)  (log scale)")
    ax_mass.set_title("Lemma B.12 schedules: step masses")

    n_a = d.schedules["A"].num_steps
    x_ex = np.asarray(d.exact_lengths, dtype=float)
    x = np.asarray(d.lengths, dtype=float)
    ax_kl.plot(x_ex, d.exact_kl, "ks-", label="exact KL(q || p) / L")
    if len(d.kl_lengths):
        x_kl = np.asarray(d.kl_lengths, dtype=float)
        ax_kl.plot(x_kl, d.true_kl, "k*-", label="KL(q || p) / L, exact per sample (interval DP)")
        ax_kl.fill_between(x_kl, d.true_kl_low, d.true_kl_high, color="k", alpha=0.15)
        ax_kl.plot(x_kl, d.ser_lower, "x:", color="C4", label="lower bound -log(1 - SER) / L")
        ax_kl.fill_between(x_kl, d.ser_lower_low, d.ser_lower_high, color="C4", alpha=0.15)
    ax_kl.plot(x_ex, d.exact_jensen, "o-", color="C0", mfc="none",
               label="exact E_tau KL(q || p_tau) / L (Lemma B.2)")
    ax_kl.plot(x, d.mc_jensen, "o-", color="C0", label="Monte Carlo E_tau KL(q || p_tau) / L")
    ax_kl.fill_between(x, d.mc_jensen_low, d.mc_jensen_high, color="C0", alpha=0.2)
    ax_kl.plot(x, d.b9, "^-", color="C1", label="Lemma B.9: E[D_tau] log|V| / L (Monte Carlo)")
    ax_kl.fill_between(x, d.b9_low, d.b9_high, color="C1", alpha=0.2)
    ax_kl.plot(x, d.b11, "v--", color="C1", mfc="none", label="Lemma B.11 analytic bound")
    ax_kl.plot(x, d.li_cai, "d-", color="C2", label="Li & Cai bound")
    ax_kl.axhline(d.theorem, color="C3", ls="--",
                  label=f"Theorem 4.2: 4 eps log|V| = {d.theorem:.3g} (L >= L_0)")
    ax_kl.axvline(d.min_length, color="C3", ls=":", lw=1, label=f"L_0 = {d.min_length}")
    ax_kl.fill_between([], [], [], color="gray", alpha=0.2, label="95% interval")
    ax_kl.set_xscale("log", base=2)
    ax_kl.set_yscale("log")
    ax_kl.set_xlabel("sequence length L (tokens, log scale)")
    ax_kl.set_ylabel("KL per token (nats/token, log scale)")
    ax_kl.set_title(f"KL per token at fixed N = {n_a} (Schedule A)")
    for ax in (ax_alpha, ax_mass):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax_kl.grid(alpha=0.3)
    ax_kl.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"Theorem 4.2 / Lemma B.12: a fixed number of steps keeps the KL per token "
                 f"bounded (n = {d.n}, eps = {d.eps:g})")
    _parameters(fig, (
        f"Language: Table 1 {d.language} (preset seed 0, |V| = {d.vocab_size}), exact oracle "
        f"(eps_learning = 0); Schedule A with N = {n_a} steps at every L; Monte Carlo: "
        f"{d.num_samples} samples per L (information profile {d.information_samples}, true KL "
        f"{d.kl_samples}), seed {d.seed}; bands: {CONFIDENCE:.0%} t intervals (Wilson for the "
        "SER); Li & Cai's s_max factor averaged over 400 instances of the schedule."
    ))
    return fig


# ------------------------------------------------------------------------------ policies


POLICY_LANGUAGES = ("2-gram", "3-gram", "4-gram", "C.7")
"""Languages of ``figure_policies``: the pruned Table 1 n-gram presets and Example C.7 with
interval l = 5 (|V| = 16)."""

POLICY_CURVES: tuple[tuple[str, str, tuple[float, ...]], ...] = (
    ("topk-confidence", "steps", (1 / 32, 1 / 8, 1 / 2)),
    ("topk-margin", "steps", (1 / 32, 1 / 8, 1 / 2)),
    ("topk-entropy", "steps", (1 / 32, 1 / 8, 1 / 2)),
    ("random-topk", "steps", (1 / 32, 1 / 8, 1 / 2)),
    ("threshold", "value", (0.5, 0.7, 0.9, 0.99)),
    ("eb", "value", (10.0, 1.0, 0.1, 0.01)),
    ("factor", "value", (4.0, 1.0, 0.25, 0.05)),
    ("linear schedule", "schedule", (1 / 32, 1 / 8, 1 / 2, 1.0, 4.0)),
)
"""The curves of ``figure_policies``: (name, how the settings read, settings). ``steps``: N as a
fraction of L (TopK, RandomTopK; at N = L every one of them reveals one position per step and is
exact, which is the AR point); ``value``: tau, gamma or f of the rule (``parse_policy`` forms
``threshold:TAU``, ``eb:GAMMA``, ``factor:F``); ``schedule``: N / L of ``Schedule.linear(N)``."""


@dataclass(frozen=True)
class PoliciesData:
    """Numbers of ``figure_policies``: for each language (``languages``, at ``lengths``), each
    curve (``curves``, see ``POLICY_CURVES``) and each of its settings (``parameters``: N, tau,
    gamma or f; NaN pads curves with fewer settings), arrays of shape (languages, curves, points):

    ``nfe``, ``nfe_low``, ``nfe_high``: mean denoiser calls per row (t interval; under the linear
    schedule the calls of steps that reveal something, ddpm_cache); ``ser``, ``ser_low``,
    ``ser_high``: SER (eq. 5) with its Wilson interval. Example C.7's linear schedule is exact
    (``interval_parity_ser``, ``Schedule.expected_nfe``; zero-width intervals).
    """

    languages: tuple[str, ...]
    lengths: tuple[int, ...]
    curves: tuple[str, ...]
    parameters: np.ndarray
    nfe: np.ndarray
    nfe_low: np.ndarray
    nfe_high: np.ndarray
    ser: np.ndarray
    ser_low: np.ndarray
    ser_high: np.ndarray
    num_samples: int
    seed: int


def _policy_language(name: str, length: int):
    """(language, length) of a ``POLICY_LANGUAGES`` entry; C.7 takes the multiple of 5 nearest
    ``length``."""
    from .languages import IntervalParity

    if name == "C.7":
        return IntervalParity(5), max(5, 5 * round(length / 5))
    return preset(name), length


def _policy_point(language, length: int, kind: str, name: str, setting: float, num: int, rng
                  ) -> tuple[float, ...]:
    """(parameter, nfe, nfe_low, nfe_high, ser, ser_low, ser_high) of one point."""
    from .estimate import mean_interval
    from .languages import IntervalParity
    from .metrics import sequence_error_rate
    from .policies import parse_policy
    from .sampling import sample
    from .theory.interval import interval_parity_ser

    if kind == "value":
        plan, param = parse_policy(f"{name}:{setting!r}"), setting
    else:
        param = max(1, round(setting * length))
        plan = Schedule.linear(param) if kind == "schedule" else parse_policy(f"{name}:{param}")
    if kind == "schedule" and isinstance(language, IntervalParity):
        ser = interval_parity_ser(language.interval, length, plan)
        nfe = plan.expected_nfe(length)
        return (param, nfe, nfe, nfe, ser, ser, ser)
    res = sample(language, plan, length, num, rng=rng)
    nfe_est = mean_interval(res.nfe_per_row, CONFIDENCE)
    ser_est = sequence_error_rate(language, res.tokens, CONFIDENCE)
    return (param, nfe_est.value, nfe_est.low, nfe_est.high, ser_est.value, ser_est.low,
            ser_est.high)


def figure_policies_data(
    *,
    quick: bool = False,
    length: int | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> PoliciesData:
    """SER against mean NFE for every unmasking rule of ``mdm_exact.policies`` (Theorem 4.4's
    question: does any rule reach a low SER with N much smaller than L?), with the exact oracle.

    For each language of ``POLICY_LANGUAGES`` and each setting of ``POLICY_CURVES``,
    ``num_samples`` sequences are drawn with ``sampling.sample`` and scored with
    ``metrics.sequence_error_rate``; NFE per row is ``SampleResult.nfe_per_row``. Example C.7
    runs at the multiple of 5 nearest L (510 for L = 512).

    Defaults: L = 512, 20 samples per point (320 s of one core measured, most of it the 4-gram
    oracle); ``quick``: L = 20, 8 samples (seconds). ``progress``: a tqdm bar over the points on
    stderr.
    """
    length = (20 if quick else 512) if length is None else int(length)
    num = (8 if quick else 20) if num_samples is None else int(num_samples)
    if length < 5 or num < 2:
        raise ArgumentError(f"length must be >= 5 and num_samples >= 2, got {length}, {num}")
    check_memory(f"figure policies (length={length}, num_samples={num})",
                 4.0 * num * length * (8.0 * 16 + 32.0), argument="length or num_samples")
    points = max(len(values) for _, _, values in POLICY_CURVES)
    shape = (len(POLICY_LANGUAGES), len(POLICY_CURVES), points)
    table = np.full((7, *shape), np.nan)
    lengths = []
    bar = progress_bar(progress, desc="figure policies",
                       total=len(POLICY_LANGUAGES) * sum(len(v) for _, _, v in POLICY_CURVES))
    for i, lang_name in enumerate(POLICY_LANGUAGES):
        language, n_tokens = _policy_language(lang_name, length)
        lengths.append(n_tokens)
        for j, (name, kind, values) in enumerate(POLICY_CURVES):
            for k, setting in enumerate(values):
                rng = np.random.default_rng([seed, i, j, k])
                table[:, i, j, k] = _policy_point(language, n_tokens, kind, name, setting, num,
                                                  rng)
                bar.update(1)
    bar.close()
    return PoliciesData(POLICY_LANGUAGES, tuple(lengths), tuple(c[0] for c in POLICY_CURVES),
                        *table, num_samples=num, seed=seed)


_POLICY_STYLE = {"topk-confidence": ("o", "C0"), "topk-margin": ("s", "C1"),
                 "topk-entropy": ("D", "C2"), "random-topk": ("v", "C7"),
                 "threshold": ("^", "C3"), "eb": ("P", "C4"), "factor": ("X", "C5"),
                 "linear schedule": (".", "k")}


def _policy_label(name: str) -> str:
    return {"topk-confidence": "TopK confidence (N = L/32, L/8, L/2)",
            "topk-margin": "TopK margin (same N)", "topk-entropy": "TopK entropy (same N)",
            "random-topk": "RandomTopK (same N)",
            "threshold": "Threshold tau = 0.5, 0.7, 0.9, 0.99",
            "eb": "EntropyBounded gamma = 10, 1, 0.1, 0.01",
            "factor": "Factor f = 4, 1, 0.25, 0.05",
            "linear schedule": "linear schedule (N = L/32 .. 4L)"}.get(name, name)


def figure_policies(*, quick: bool = False, data: PoliciesData | None = None, **kwargs):
    """SER against mean NFE (log axis) for every unmasking rule, one panel per language (the
    2-, 3-, 4-gram presets and Example C.7), beside the linear-schedule curve and the
    autoregressive point (NFE = L, SER = 0); error bars: 95% Wilson intervals on SER and t
    intervals on the mean NFE. Returns a Figure with 4 axes.

    ``kwargs`` go to ``figure_policies_data``; pass ``data`` to draw precomputed numbers.
    """
    from matplotlib.figure import Figure

    d = _data(figure_policies_data, quick, data, kwargs)
    fig = Figure(figsize=(15.0, 9.0), layout="constrained")
    axes = list(fig.subplots(2, 2).ravel())
    for i, (ax, lang_name, length) in enumerate(zip(axes, d.languages, d.lengths, strict=True)):
        for j, name in enumerate(d.curves):
            marker, color = _POLICY_STYLE.get(name, ("o", f"C{j % 10}"))
            # Points joined in the order of the settings (the sweep), not sorted by NFE.
            keep = np.isfinite(d.nfe[i, j])
            x, y = d.nfe[i, j, keep], d.ser[i, j, keep]
            xerr = np.vstack([x - d.nfe_low[i, j, keep], d.nfe_high[i, j, keep] - x])
            yerr = np.vstack([y - d.ser_low[i, j, keep], d.ser_high[i, j, keep] - y])
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, marker=marker, color=color,
                        ls="--" if name == "linear schedule" else "-", lw=1, ms=6, alpha=0.85,
                        capsize=2, label=_policy_label(name))
        ax.plot([length], [0.0], "*", color="gold", mec="k", ms=16, zorder=5,
                label="AR (oracle, N = L, left to right): SER = 0 exactly")
        ax.axvline(length, color="gray", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        low = float(np.nanmin(d.nfe[i]))
        ticks = [2.0**e for e in range(20) if low / 1.5 <= 2.0**e < 0.75 * length] + [length]
        ax.set_xticks(ticks, [str(int(t)) for t in ticks])
        ax.minorticks_off()
        ax.set_ylim(-0.04, 1.04)
        ax.set_xlabel("mean NFE per sequence (denoiser calls, log scale)")
        ax.set_ylabel("SER = 1 - p(supp q)  (probability)")
        title = (f"Example C.7 (l = 5, |V| = 16), L = {length}" if lang_name == "C.7"
                 else f"{lang_name} preset (Table 1), L = {length}")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    fig.suptitle("Adaptive unmasking rules with the exact oracle: sequence error rate vs "
                 "number of denoiser calls")
    _parameters(fig, (
        f"Exact oracle denoiser; {d.num_samples} samples per point, seed {d.seed}; Example C.7 "
        f"at L = {d.lengths[-1]} (a multiple of l = 5); bars: {CONFIDENCE:.0%} Wilson interval "
        "(SER) and t interval (mean NFE); Example C.7's linear schedule is exact "
        "(zero-width bars); TopK / RandomTopK with N = L reveal one position per step and are "
        "exact (the AR point)."
    ))
    return fig


# ------------------------------------------------------------------------------ learned runs


LEARNED = "learned"
"""Name of the figure of trained models (``mdm-exact figure learned --run DIR``); it draws
the results JSON of ``mdm-exact evaluate``, so it is not in ``FIGURES`` (nothing to compute)."""

RESULTS_FILE = "results.json"
RESULTS_FORMAT = "mdm_exact.nn.results/1"
"""The file ``mdm_exact.nn.evaluate_run`` writes in a run directory, and its format (the same
constants as ``mdm_exact.nn``, repeated here so that plotting never imports torch)."""


@dataclass(frozen=True)
class LearnedRun:
    """One evaluated run. Arrays of shape (3, steps) hold (value, low, high) per N, NaN where
    undefined (an infinite gen. log-perplexity is kept as inf; a valid-only mean with fewer than
    2 valid samples is NaN); (3,) arrays the AR point (None without an AR model).

    ``gen_log_ppl``: E_p[-log q(x)] / L, nats/token; ``valid_only``: the same over the samples
    inside supp q (biased); ``ser``: sequence error rate; ``learning_error_mean`` /
    ``learning_error_p95``: Assumption 4.1 measured, KL(q(x_i | x_t) || p_theta(x_i | x_t)) in
    nats over masked positions (None without an MDM).
    """

    name: str
    language: str
    length: int
    num_samples: int
    seed: int
    schedule: str
    entropy_rate: float
    train_steps: int | None
    steps: tuple[int, ...]
    mdm_gen_log_ppl: np.ndarray
    mdm_valid_only: np.ndarray
    mdm_ser: np.ndarray
    oracle_gen_log_ppl: np.ndarray
    oracle_valid_only: np.ndarray
    oracle_ser: np.ndarray
    ar_gen_log_ppl: np.ndarray | None
    ar_valid_only: np.ndarray | None
    ar_ser: np.ndarray | None
    learning_error_mean: float | None
    learning_error_p95: float | None


@dataclass(frozen=True)
class LearnedData:
    """Numbers of ``figure_learned``: ``runs``, all on one language."""

    runs: tuple[LearnedRun, ...]


def read_learned_results(path: str | Path) -> dict:
    """The results JSON of a run directory (its ``results.json``) or of a results file,
    refusing a missing directory or file and a file of another format with one line."""
    from ._io import read_json_object
    from .errors import MissingFileError

    p = Path(path)
    if str(path) == "" or not p.exists():
        raise MissingFileError(f"--run {str(path)!r}: no run directory or results file there")
    file = p / RESULTS_FILE if p.is_dir() else p
    if not file.is_file():
        raise MissingFileError(f"--run {str(path)!r} has no {RESULTS_FILE} (run mdm-exact "
                               "evaluate on it first)")
    data = read_json_object(file, "the results file")
    if data.get("format") != RESULTS_FORMAT:
        raise ArgumentError(f"--run {str(file)!r} is not a results file of mdm-exact evaluate "
                            f"(key 'format' must be {RESULTS_FORMAT!r}, got "
                            f"{data.get('format')!r})")
    return data


def _triple(estimate, where: str) -> np.ndarray:
    if estimate is None:
        return np.full(3, np.nan)
    try:
        return np.array([float(estimate[key]) for key in ("value", "low", "high")])
    except (TypeError, KeyError, ValueError):
        raise ArgumentError(f"{where}: an estimate must hold numbers 'value', 'low' and 'high', "
                            f"got {estimate!r}") from None


def learned_run_data(results: dict, name: str = "run") -> LearnedRun:
    """``LearnedRun`` from a results JSON dict (``read_learned_results``); ``name`` labels it."""
    try:
        ev = results["evaluation"]
        rows = {(str(r["model"]), int(r["steps"])): r for r in ev["rows"]}
        le = ev["learning_error"]
        length, entropy_rate = int(ev["length"]), float(ev["entropy_rate"])
        header = (str(ev["language"]), length, int(ev["num_samples"]), int(ev["seed"]),
                  str(ev["schedule"]))
    except (TypeError, KeyError, ValueError):
        raise ArgumentError(f"results of {name!r} lack the keys of an evaluation "
                            "('evaluation' with 'rows', 'length', 'learning_error', ...)"
                            ) from None
    steps = tuple(sorted(n for model, n in rows if model == "mdm"))
    if not steps:
        raise ArgumentError(f"results of {name!r} hold no mdm rows (evaluate a run with an MDM)")
    missing = [n for n in steps if ("oracle", n) not in rows]
    if missing:
        raise ArgumentError(f"results of {name!r} have no oracle row at steps {missing}")

    def series(model: str, key: str) -> np.ndarray:
        return np.stack([_triple(rows[model, n].get(key), f"results of {name!r}")
                         for n in steps], axis=1)

    ar = rows.get(("ar", length))
    step = ((results.get("models") or {}).get("mdm") or {}).get("step")
    return LearnedRun(
        name, *header, entropy_rate, step if isinstance(step, int) else None, steps,
        series("mdm", "gen_log_ppl"), series("mdm", "gen_log_ppl_valid"), series("mdm", "ser"),
        series("oracle", "gen_log_ppl"), series("oracle", "gen_log_ppl_valid"),
        series("oracle", "ser"),
        None if ar is None else _triple(ar["gen_log_ppl"], f"results of {name!r}"),
        None if ar is None else _triple(ar.get("gen_log_ppl_valid"), f"results of {name!r}"),
        None if ar is None else _triple(ar["ser"], f"results of {name!r}"),
        None if le is None else float(le["mean"]), None if le is None else float(le["p95"]),
    )


def figure_learned_data(runs: Sequence[str | Path]) -> LearnedData:
    """``LearnedData`` of run directories (or results files): each read with
    ``read_learned_results``; runs on different languages are refused, naming both."""
    if isinstance(runs, str | Path) or not runs:
        raise ArgumentError(f"runs must be a non-empty list of run directories, got {runs!r}")
    loaded = [(str(run), read_learned_results(run)) for run in runs]
    first_name, first = loaded[0]
    for name, data in loaded[1:]:
        if _json_key(data.get("language")) != _json_key(first.get("language")):
            raise ArgumentError(
                f"--run {name!r} and --run {first_name!r} are on different languages "
                f"({(data.get('evaluation') or {}).get('language')} vs "
                f"{(first.get('evaluation') or {}).get('language')}); one figure compares "
                "runs on one language")
    return LearnedData(tuple(learned_run_data(data, _run_label(name)) for name, data in loaded))


def _run_label(name: str) -> str:
    """A run's label in the figure: the directory's name, or the results file's stem."""
    path = Path(name)
    return (path.stem if path.is_file() else path.name) or name


def _json_key(value) -> str:
    """Canonical JSON text of ``value`` (sorted keys), to compare two languages' dicts."""
    import json

    return json.dumps(value, sort_keys=True)


def _band(ax, x, triple, color, style: str, label: str, alpha: float) -> None:
    finite = np.isfinite(triple[0])
    y = np.where(finite, triple[0], np.nan)
    ax.plot(x, y, style, color=color, label=label)
    ok = np.isfinite(triple[1]) & np.isfinite(triple[2])
    if ok.any():
        ax.fill_between(x, np.where(ok, triple[1], np.nan), np.where(ok, triple[2], np.nan),
                        color=color, alpha=alpha)


def _ar_point(ax, x_ar: float, triple, color, label: str) -> None:
    if triple is None or not np.isfinite(triple[0]):
        return
    ax.errorbar([x_ar], [triple[0]], yerr=[[triple[0] - triple[1]], [triple[2] - triple[0]]],
                fmt="*", ms=12, color=color, label=label)


def figure_learned(data):
    """The learned MDM against the Oracle (same reveal steps, same seeds) and the AR point:
    gen. log-perplexity (left) and SER (right) against the number of sampling steps N (log
    axis), with 95% intervals, the measured learning error (Assumption 4.1) in the legend.

    ``data``: a ``LearnedData``, or a list of run directories / results files
    (``figure_learned_data``), or of results dicts as read from the JSON. An infinite gen.
    log-perplexity (a sample outside supp q) is not drawn; the valid-only mean (biased) is
    drawn dotted beside it. Returns a Figure with 2 axes.
    """
    if not isinstance(data, LearnedData):
        items = list(data) if isinstance(data, list | tuple) else [data]
        if items and all(isinstance(item, dict) for item in items):
            data = LearnedData(tuple(learned_run_data(item, f"run {i}")
                                     for i, item in enumerate(items)))
        else:
            data = figure_learned_data(items)
    fig, (ax_ppl, ax_ser) = _figure(2, width=6.4, height=5.0)
    x_ar = 2.0 * max(max(run.steps) for run in data.runs)
    for i, run in enumerate(data.runs):
        color = f"C{i}"
        x = np.asarray(run.steps, dtype=float)
        error = ("" if run.learning_error_mean is None else
                 f", learning error mean {run.learning_error_mean:.3f}, "
                 f"p95 {run.learning_error_p95:.3f} nats")
        mdm_label = f"learned MDM, {run.name}{error}"
        oracle_label = f"Oracle, same reveal steps ({run.name})"
        _band(ax_ppl, x, run.mdm_gen_log_ppl, color, "o-", mdm_label, 0.2)
        _band(ax_ppl, x, run.oracle_gen_log_ppl, color, "s--", oracle_label, 0.1)
        ax_ppl.plot(x, run.mdm_valid_only[0], "o:", color=color, mfc="none", alpha=0.7,
                    label=f"learned MDM, valid samples only (biased), {run.name}")
        ax_ppl.plot(x, run.oracle_valid_only[0], "s:", color=color, mfc="none", alpha=0.4,
                    label=f"Oracle, valid samples only (biased), {run.name}")
        ax_ppl.axhline(run.entropy_rate, color=color, lw=0.8, alpha=0.6,
                       label=f"H(q)/L = {run.entropy_rate:.4f} (L = {run.length})")
        _ar_point(ax_ppl, x_ar, run.ar_gen_log_ppl, color, f"AR (learned, N = L), {run.name}")
        if run.ar_gen_log_ppl is not None and not np.isfinite(run.ar_gen_log_ppl[0]):
            ax_ppl.plot([x_ar], [run.ar_valid_only[0]], "*", ms=12, mfc="none", color=color,
                        label=f"AR, valid samples only (biased), {run.name}")
        _band(ax_ser, x, run.mdm_ser, color, "o-", mdm_label, 0.2)
        _band(ax_ser, x, run.oracle_ser, color, "s--", oracle_label, 0.1)
        _ar_point(ax_ser, x_ar, run.ar_ser, color, f"AR (learned, N = L), {run.name}")
    steps = sorted({n for run in data.runs for n in run.steps})
    _steps_axes((ax_ppl, ax_ser), steps, x_ar, 6)
    ax_ppl.set_ylabel("gen. log-perplexity E_p[-log q(x)] / L  (nats/token)")
    ax_ppl.set_title("Gen. log-perplexity (inf not drawn; dotted: valid samples only)")
    ax_ser.set_ylabel("SER = 1 - p(supp q)  (probability)")
    ax_ser.set_title("Sequence error rate")
    ax_ser.set_ylim(-0.03, 1.03)
    fig.suptitle(f"Learned MDM vs the Oracle on {data.runs[0].language}")
    _parameters(fig, "; ".join(
        f"{run.name}: L = {run.length}, schedule {_SCHEDULE_TEXT.get(run.schedule, run.schedule)}"
        f", ddpm_cache, {run.num_samples} samples per point, seed {run.seed}"
        + ("" if run.train_steps is None else f", MDM trained {run.train_steps} steps")
        for run in data.runs) + f"; bands: {CONFIDENCE:.0%} t interval (gen. log-perplexity) "
        "and Wilson interval (SER).")
    return fig


def _figure_learned_cli(args: argparse.Namespace) -> int:
    """``figure learned --run DIR [--run DIR ...]``: the figure of evaluated runs."""
    given = [f"--{o}" for o in ("samples", "length", "quick") if getattr(args, o, None)]
    if getattr(args, "from_dir", None) is not None:
        given.append("--from")
    if given or args.seed != 0:
        raise ArgumentError(f"{' and '.join(given or ['--seed'])} do not apply to figure "
                            f"{LEARNED!r} (its numbers come from the runs' {RESULTS_FILE})")
    if not args.run:
        raise ArgumentError(f"figure {LEARNED!r} needs --run DIR (a run directory evaluated by "
                            "mdm-exact evaluate), got none")
    if args.dpi < 1:
        raise ArgumentError(f"--dpi must be positive, got {args.dpi}")
    data = figure_learned_data(args.run)
    out = _figure_out(args)
    fig = figure_learned(data)
    write_atomic(out, lambda path: fig.savefig(path, dpi=args.dpi))
    print(f"wrote {out}")
    return 0



# ------------------------------------------------------------------------------ registry / CLI


FIGURES: dict[str, Callable] = {
    "fig1": figure_1,
    "theorem-4.4": figure_theorem_4_4,
    "theorem-4.2": figure_theorem_4_2,
    "policies": figure_policies,
}
"""Figure name (``mdm-exact figure NAME``) -> figure function."""


def add_figure_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the arguments of ``mdm-exact figure`` to ``parser`` (a subparser) and set its
    ``func`` to ``run_figure``. Does not import matplotlib."""
    parser.description = (
        "Render one of the paper's figures, computed with the exact oracle, to an image file "
        f"(the format follows the extension). Figures: {', '.join(FIGURES)}; {LEARNED} draws "
        "trained runs (--run) beside the Oracle."
    )
    parser.add_argument("name", choices=sorted([*FIGURES, LEARNED]), help="which figure")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="output file, e.g. fig1.png (.png, .pdf, .svg); must not exist "
                             "unless --overwrite")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--quick", action="store_true",
                        help="reduced setting that runs in seconds (fewer samples, shorter L)")
    parser.add_argument("--samples", type=int, default=None, metavar="NUM",
                        help="Monte-Carlo samples per point (fig1, theorem-4.2, policies)")
    parser.add_argument("--length", type=int, default=None, metavar="L",
                        help="sequence length (fig1, policies; default 512, 32 / 20 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo (default 0)")
    parser.add_argument("--dpi", type=int, default=150, help="resolution of raster output")
    parser.add_argument("--from", dest="from_dir", metavar="DIR",
                        help="fig1: plot the table of a sweep directory (mdm-exact sweep --out "
                             "DIR) instead of computing")
    parser.add_argument("--run", action="append", default=None, metavar="DIR",
                        help=f"{LEARNED}: a run directory evaluated by mdm-exact evaluate (its "
                             f"{RESULTS_FILE}, or such a file); repeat to compare runs on one "
                             "language")
    parser.set_defaults(func=run_figure)
    return parser


def _figure_out(args: argparse.Namespace) -> Path:
    """``--out`` checked before any work: a new file (or ``--overwrite``) in a writable
    directory, with an extension matplotlib can write (none means PNG)."""
    from matplotlib.backend_bases import FigureCanvasBase

    out = output_file("--out", args.out, overwrite=getattr(args, "overwrite", False))
    suffix = out.suffix.lower().lstrip(".")
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix not in formats:
        raise ArgumentError(f"--out must end in one of {', '.join('.' + f for f in formats)}, "
                            f"got {args.out!r}")
    return out


def run_figure(args: argparse.Namespace) -> int:
    """Build the figure ``args.name`` and save it to ``args.out``; returns 0.

    Raises a one-line ``MdmExactError`` before any work for an option the figure does not take,
    a non-positive value or an ``--out`` that cannot be written."""
    if args.name == LEARNED:
        return _figure_learned_cli(args)
    if getattr(args, "run", None):
        raise ArgumentError(f"--run applies to figure {LEARNED!r} only, got {args.name!r}")
    if getattr(args, "from_dir", None) is not None:
        return _figure_from_sweep(args)
    draw = FIGURES[args.name]
    data_fn = {"fig1": figure_1_data, "theorem-4.4": figure_theorem_4_4_data,
               "theorem-4.2": figure_theorem_4_2_data, "policies": figure_policies_data}[args.name]
    accepted = inspect.signature(data_fn).parameters
    kwargs = {}
    for option, key in (("samples", "num_samples"), ("length", "length"), ("seed", "seed")):
        value = getattr(args, option, None)
        if value is None or (option == "seed" and key not in accepted):
            continue
        if key not in accepted:
            raise ArgumentError(f"--{option} does not apply to figure {args.name!r}")
        if option == "seed" and value < 0:
            raise ArgumentError(f"--seed must be >= 0, got {value}")
        if option != "seed" and value < 1:
            raise ArgumentError(f"--{option} must be positive, got {value}")
        kwargs[key] = value
    if args.dpi < 1:
        raise ArgumentError(f"--dpi must be positive, got {args.dpi}")
    out = _figure_out(args)
    fig = draw(quick=args.quick, progress=True, **kwargs)
    write_atomic(out, lambda path: fig.savefig(path, dpi=args.dpi))
    print(f"wrote {out}")
    return 0


def _figure_from_sweep(args: argparse.Namespace) -> int:
    """``figure fig1 --from DIR``: the figure of a sweep's ``results.csv``."""
    from .sweep import load_results

    if args.name != "fig1":
        raise ArgumentError(f"--from applies to figure 'fig1' only, got {args.name!r}")
    given = [f"--{o}" for o in ("samples", "length", "quick") if getattr(args, o, None)]
    if given or args.seed != 0:
        raise ArgumentError(f"{' and '.join(given or ['--seed'])} do not apply with --from "
                            "(the sweep fixed them)")
    if args.dpi < 1:
        raise ArgumentError(f"--dpi must be positive, got {args.dpi}")
    out = _figure_out(args)
    fig = figure_1(data=load_results(args.from_dir))
    write_atomic(out, lambda path: fig.savefig(path, dpi=args.dpi))
    print(f"wrote {out}")
    return 0


__all__ = [
    "CONFIDENCE",
    "FIGURES",
    "LEARNED",
    "POLICY_CURVES",
    "POLICY_LANGUAGES",
    "TABLE1",
    "Fig1Data",
    "LearnedData",
    "LearnedRun",
    "PoliciesData",
    "Theorem42Data",
    "Theorem44Data",
    "add_figure_arguments",
    "figure_1",
    "figure_1_data",
    "figure_1_data_from_table",
    "figure_learned",
    "figure_learned_data",
    "figure_policies",
    "figure_policies_data",
    "figure_theorem_4_2",
    "figure_theorem_4_2_data",
    "figure_theorem_4_4",
    "figure_theorem_4_4_data",
    "learned_run_data",
    "read_learned_results",
    "run_figure",
]
