"""Learned models measured against the exact language (the paper's Section 5 experiments).

For each number of steps N, the learned MDM and the ``Oracle`` run the same schedule with the same
seed (so the same reveal steps tau), and every sample is scored exactly:

- generative log-perplexity E_{x~p}[-log q(x)] / L (``metrics.generative_log_perplexity``; +inf as
  soon as one sample is outside supp(q), so the mean over in-support samples is shown beside it);
- SER (eq. 5) by the exact support test (``metrics.sequence_error_rate``), Wilson interval;
- NFE: N for ddpm, the mean number of non-empty steps for ddpm_cache (Appendix D), with its
  expectation sum_k 1 - (1 - p^(k))^L.

An autoregressive model, when given, is scored the same way (left to right, NFE = L). The
measured learning error is Assumption 4.1 itself: KL(q(x_i | x_t) || p_theta(x_i | x_t)) at the
masked positions of x_t, with x ~ q and each position masked with probability t, at several t;
q(x_i | x_t) is the exact ``posterior_marginals``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import read_json_object
from .._utils import (
    MASK,
    as_rng,
    check_memory,
    check_positive_int,
    kl_divergence,
    progress_bar,
)
from ..errors import ArgumentError, MissingFileError
from ..estimate import Estimate, mean_interval
from ..languages import Language
from ..metrics import generative_log_perplexity, sequence_error_rate
from ..posterior import posterior_marginals
from ..sampling import Denoiser, Oracle, call_denoiser
from ..schedules import Schedule
from .sample import Generation, TorchDenoiser, autoregressive, ddpm_cache
from .train import LANGUAGE_FILE, load_model

DEFAULT_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)
"""Masking levels t at which the learning error is measured."""

COLUMNS = (
    ("steps", "N, the schedule's sampling steps (L for ar, one token per step)"),
    ("model", "mdm = the trained network; oracle = the exact q(x_i | x_t), same seed and reveal "
              "steps; ar = the autoregressive baseline"),
    ("NFE", "network calls per sequence of ddpm, which calls at every step (= N)"),
    ("NFE cache (E)", "mean network calls per sequence of ddpm_cache, which calls only after a "
                      "step that revealed something; (E) = its expectation "
                      "sum_k 1 - (1 - p^(k))^L"),
    ("gen log-ppl", "E_p[-log q(x)] / L in nats/token over all samples, 95% t interval; inf as "
                    "soon as one sample lies outside supp q"),
    ("valid-only", "the same over the samples inside supp q only: finite, but biased (it "
                   "ignores the SER mass, where -log q = inf); n/a below 2 such samples"),
    ("SER", "sequence error rate (eq. 5): the share of samples outside supp q, 95% Wilson "
            "interval"),
)
"""The columns of the ``evaluate`` table and what they mean (its legend and ``--help``)."""


def columns_legend(width: int = 96) -> str:
    """``COLUMNS`` as an indented legend wrapped to ``width`` characters."""
    import textwrap

    pad = max(len(name) for name, _ in COLUMNS) + 4
    return "\n".join(textwrap.fill(text, width, initial_indent=f"  {name:<{pad - 2}}",
                                   subsequent_indent=" " * pad) for name, text in COLUMNS)

LEARNING_ERROR_SEQUENCES = 256
"""Sequences x ~ q drawn per t for the learning error."""

# Distinct streams of one seed: schedules (with N), the AR baseline, the learning error.
_SCHEDULE_STREAM, _AR_STREAM, _LEARNING_STREAM = 1, 2, 3


@dataclass(frozen=True)
class LearningErrorAtTime:
    """KL(q(x_i | x_t) || p_theta(x_i | x_t)) in nats over ``positions`` masked positions."""

    t: float
    positions: int
    mean: float
    p95: float
    max: float


@dataclass(frozen=True)
class LearningError:
    """Assumption 4.1 measured: per masking level and pooled over all of them (nats)."""

    per_time: tuple[LearningErrorAtTime, ...]
    positions: int
    mean: float
    p95: float
    max: float

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def _summary(kl: np.ndarray) -> tuple[int, float, float, float]:
    if kl.size == 0:
        return 0, float("nan"), float("nan"), float("nan")
    return kl.size, float(kl.mean()), float(np.quantile(kl, 0.95)), float(kl.max())


def learning_error(
    language: Language,
    denoiser: Denoiser,
    length: int,
    *,
    times=DEFAULT_TIMES,
    num_sequences: int = LEARNING_ERROR_SEQUENCES,
    rng=None,
) -> LearningError:
    """The distribution of KL(q(x_i | x_t) || p_theta(x_i | x_t)) over masked positions.

    For each t in ``times``: ``num_sequences`` x ~ q of ``length`` tokens, each position masked
    independently with probability t, the exact posterior against ``denoiser`` at the masked
    positions. Reports the mean, 95th percentile and max per t and pooled.
    """
    length = check_positive_int("length", length)
    num = check_positive_int("num_sequences", num_sequences)
    ts = [float(t) for t in np.atleast_1d(times)]
    if not ts or any(not 0 < t <= 1 for t in ts):
        raise ArgumentError(f"times must be non-empty and lie in (0, 1], got {times!r}")
    gen = as_rng(rng)
    per_time, pooled = [], []
    for t in ts:
        x = language.sample(num, length, gen)
        masked = gen.random(x.shape) < t
        xt = np.where(masked, MASK, x)
        q = posterior_marginals(language, xt)
        p = call_denoiser(denoiser, xt, language.vocab_size)
        kl = kl_divergence(q, p)[masked]
        pooled.append(kl)
        per_time.append(LearningErrorAtTime(t, *_summary(kl)))
    return LearningError(tuple(per_time), *_summary(np.concatenate(pooled)))


@dataclass(frozen=True)
class ScheduleRow:
    """One sampler run scored against q.

    ``model``: ``"mdm"``, ``"oracle"`` or ``"ar"``; ``steps``: N (L for AR); ``nfe_ddpm``: N;
    ``nfe_cache``: mean per-sequence NFE of ddpm_cache; ``expected_nfe``: its expectation;
    ``gen_log_ppl``: over all samples; ``gen_log_ppl_valid``: over the in-support samples
    (None when fewer than 2); ``ser``: sequence error rate.
    """

    steps: int
    model: str
    nfe_ddpm: int
    nfe_cache: float
    expected_nfe: float
    gen_log_ppl: Estimate
    gen_log_ppl_valid: Estimate | None
    ser: Estimate

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def _score(language: Language, gen: Generation, steps: int, model: str, expected_nfe: float
           ) -> ScheduleRow:
    valid = np.asarray(language.in_support(gen.tokens))
    per_seq = -np.asarray(language.log_prob(gen.tokens[valid])) / gen.tokens.shape[1]
    return ScheduleRow(
        steps=steps,
        model=model,
        nfe_ddpm=steps,
        nfe_cache=float(gen.nfe.mean()),
        expected_nfe=float(expected_nfe),
        gen_log_ppl=generative_log_perplexity(language, gen.tokens),
        gen_log_ppl_valid=mean_interval(per_seq) if per_seq.size >= 2 else None,
        ser=sequence_error_rate(language, gen.tokens),
    )


@dataclass(frozen=True)
class Evaluation:
    """A full report: ``rows`` in order of N (MDM then Oracle), then the AR row if any."""

    language: str
    length: int
    num_samples: int
    seed: int
    schedule: str
    entropy_rate: float
    rows: tuple[ScheduleRow, ...]
    learning_error: LearningError | None

    def as_dict(self) -> dict[str, Any]:
        """The whole report as a JSON-ready dict."""
        return {
            "language": self.language,
            "length": self.length,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "schedule": self.schedule,
            "entropy_rate": self.entropy_rate,
            "rows": [row.as_dict() for row in self.rows],
            "learning_error": None if self.learning_error is None
            else self.learning_error.as_dict(),
        }

    def row(self, model: str, steps: int) -> ScheduleRow:
        """The row of ``model`` at ``steps``."""
        for r in self.rows:
            if r.model == model and r.steps == steps:
                return r
        raise KeyError(f"no {model} row at {steps} steps")

    def format(self) -> str:
        """Plain-text report (the CLI's table)."""
        lines = [
            f"language {self.language}, L = {self.length}, {self.num_samples} samples per row, "
            f"schedule {self.schedule}, seed {self.seed}",
            f"entropy rate H(q)/L = {self.entropy_rate:.4f} nats/token (the generative "
            "log-perplexity of q itself)",
        ]
        if self.learning_error is not None:
            le = self.learning_error
            lines += ["", "learning error KL(q(x_i|x_t) || p_theta(x_i|x_t)), nats, over masked "
                      "positions (Assumption 4.1):",
                      f"{'t':>6} {'positions':>10} {'mean':>9} {'p95':>9} {'max':>9}"]
            for r in le.per_time:
                lines.append(f"{r.t:>6.2f} {r.positions:>10d} {r.mean:>9.4f} {r.p95:>9.4f} "
                             f"{r.max:>9.4f}")
            lines.append(f"{'all':>6} {le.positions:>10d} {le.mean:>9.4f} {le.p95:>9.4f} "
                         f"{le.max:>9.4f}")
        header = (f"{'steps':>5} {'model':<6} {'NFE':>5} {'NFE cache (E)':>15} "
                  f"{'gen log-ppl [95%]':>24} {'valid-only [95%]':>24} {'SER [95%]':>24}")
        lines += ["", header, "-" * len(header)]
        for r in self.rows:
            lines.append(
                f"{r.steps:>5d} {r.model:<6} {r.nfe_ddpm:>5d} "
                f"{f'{r.nfe_cache:.2f} ({r.expected_nfe:.2f})':>15} "
                f"{_interval(r.gen_log_ppl):>24} {_interval(r.gen_log_ppl_valid):>24} "
                f"{_interval(r.ser):>24}"
            )
        lines += ["", "columns:", columns_legend()]
        return "\n".join(lines)


def _interval(est: Estimate | None) -> str:
    if est is None:
        return "n/a"
    if not np.isfinite(est.value):
        return "inf"
    return f"{est.value:.4f} [{est.low:.4f}, {est.high:.4f}]"


def _describe(language: Language) -> str:
    name = language.metadata.get("preset")
    return f"{language!r}" + (f" (preset {name})" if name else "")


def evaluate(
    language: Language,
    length: int,
    steps,
    num_samples: int,
    *,
    mdm: Denoiser | None = None,
    ar: Denoiser | None = None,
    schedule: str = "linear",
    seed: int = 0,
    learning_error_sequences: int = LEARNING_ERROR_SEQUENCES,
    progress: bool = False,
) -> Evaluation:
    """Score ``mdm`` and the Oracle with ddpm_cache on ``Schedule.named(schedule, N)`` for each N
    in ``steps``, ``ar`` left to right, and ``mdm``'s learning error; all reproducible from
    ``seed``. Without ``mdm``, only the AR row (and no Oracle rows) is produced. ``progress``
    shows a tqdm bar on stderr (after 2 s) counting the sampling steps of every row, the
    learning error's masking levels and the entropy rate.

    Refused before any work when a row would exceed the memory budget: the plan of N steps
    (a few float64 arrays of N + 1 entries) and the samples with their (num, L, V) probabilities.
    """
    length = check_positive_int("length", length)
    num = check_positive_int("num_samples", num_samples, 2)
    seed = check_positive_int("seed", seed, 0)
    ns = [check_positive_int("steps", n) for n in np.atleast_1d(np.asarray(steps, dtype=object))]
    if mdm is None and ar is None:
        raise ArgumentError("evaluate needs an mdm or an ar denoiser")
    per_sample = float(num) * length * (8.0 * language.vocab_size + 32.0)
    check_memory(f"evaluate with steps={max(ns)}", 32.0 * (max(ns) + 1) + per_sample,
                 argument="steps or num_samples")
    jobs = [(n, name) for n in ns for name in ("mdm", "oracle")] if mdm is not None else []
    if ar is not None:
        jobs.append((length, "ar"))
    rows = []
    oracle = Oracle(language) if mdm is not None else None
    # Bar units: the N steps of each row (L for AR), one per masking level, one for H(q).
    sizes = [length if name == "ar" else n for n, name in jobs]
    total = sum(sizes) + (len(DEFAULT_TIMES) if mdm is not None else 0) + 1
    done = 0
    with progress_bar(progress, total=total, desc="evaluate", unit="step") as bar:
        for (n, name), size in zip(jobs, sizes, strict=True):
            bar.set_postfix_str(f"{name} N={size}", refresh=False)
            if name == "ar":
                gen = autoregressive(_Counted(ar, bar), language, length, num,
                                     np.random.default_rng([seed, _AR_STREAM]))
                rows.append(_score(language, gen, length, "ar", length))
            else:
                plan = Schedule.named(schedule, n)
                rng = np.random.default_rng([seed, _SCHEDULE_STREAM, n])
                den = _Counted(mdm if name == "mdm" else oracle, bar)
                gen = ddpm_cache(den, language, plan, length, num, rng)
                rows.append(_score(language, gen, n, name, plan.expected_nfe(length)))
            done += size
            bar.update(done - bar.n)  # the empty steps made no call
        le = None
        if mdm is not None:
            bar.set_postfix_str("learning error", refresh=False)
            le = learning_error(language, _Counted(mdm, bar), length,
                                num_sequences=learning_error_sequences,
                                rng=np.random.default_rng([seed, _LEARNING_STREAM]))
        bar.set_postfix_str("entropy rate", refresh=False)
        entropy_rate = float(language.entropy(length).value) / length
        bar.update()
    return Evaluation(
        language=_describe(language),
        length=length,
        num_samples=num,
        seed=seed,
        schedule=schedule,
        entropy_rate=entropy_rate,
        rows=tuple(rows),
        learning_error=le,
    )


class _Counted:
    """``denoiser`` counting each of its calls on a progress bar (one call per non-empty
    sampling step, one per masking level of the learning error)."""

    def __init__(self, denoiser: Denoiser, bar):
        self.denoiser = denoiser
        self.bar = bar

    def __call__(self, x) -> np.ndarray:
        out = self.denoiser(x)
        self.bar.update()
        return out


def evaluate_run(
    run_dir: str | Path,
    steps,
    num_samples: int,
    *,
    seed: int = 0,
    ar_dir: str | Path | None = None,
    length: int | None = None,
    schedule: str = "linear",
    device: str | None = "auto",
    progress: bool = False,
) -> Evaluation:
    """``evaluate`` on the checkpoints of a run directory (``train.load_model``).

    The MDM is ``run_dir``'s; the AR baseline is ``ar_dir``'s when given, else ``run_dir``'s if
    it holds one. ``length`` defaults to the trained length and may not exceed the context.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingFileError(f"no run directory at {str(run_dir)!r}")
    has_mdm = (run_dir / "mdm.pt").exists()
    if ar_dir is None and (run_dir / "ar.pt").exists():
        ar_dir = run_dir
    if not has_mdm and ar_dir is None:
        raise MissingFileError(f"{str(run_dir)!r} holds no trained model (mdm.pt or ar.pt)")
    mdm_model, language = load_model(run_dir, "mdm", device) if has_mdm else (None, None)
    ar_model = None
    if ar_dir is not None:
        ar_model, ar_language = load_model(ar_dir, "ar", device)
        if language is None:
            language = ar_language
        elif json.dumps(ar_language.to_dict()) != json.dumps(language.to_dict()):
            raise ArgumentError(f"the AR run {str(ar_dir)!r} was trained on a different language "
                             f"than {str(run_dir / LANGUAGE_FILE)!r}")
    first = mdm_model if mdm_model is not None else ar_model
    kind_dir = run_dir if mdm_model is not None else Path(ar_dir)
    info = read_json_object(kind_dir / f"{first.config.kind}.json", "the run's config file")
    trained = info.get("train", {}).get("length") if isinstance(info.get("train"), dict) else None
    if isinstance(trained, bool) or not isinstance(trained, int):
        raise ArgumentError(f"{str(kind_dir / (first.config.kind + '.json'))!r} has no trained "
                            "length")
    length = trained if length is None else check_positive_int("length", length)
    for model in (mdm_model, ar_model):
        if model is not None and length > model.config.max_length:
            raise ArgumentError(f"length must be <= the {model.config.kind} model's max_length "
                             f"{model.config.max_length}, got {length}")
    return evaluate(
        language, length, steps, num_samples,
        mdm=None if mdm_model is None else TorchDenoiser(mdm_model),
        ar=None if ar_model is None else TorchDenoiser(ar_model),
        schedule=schedule, seed=seed, progress=progress,
    )
