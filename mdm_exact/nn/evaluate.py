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

Under an adaptive policy (``mdm_exact.policies``) the MDM and the Oracle are sampled the same way
(same seed) and scored alike; for a deterministic policy the learned model's exact
log p_theta(x) is ``likelihood.log_likelihood`` with the learned denoiser (one trajectory per x),
so KL(q || p_theta) = E_q[log q(x) - log p_theta(x)] is estimated from x ~ q with a t interval
(exact per sample, Monte Carlo over x), per sequence and per token, beside the Oracle's.

``evaluate_run`` writes the report as ``results.json`` in the run directory
(``RESULTS_FORMAT``): a pure function of the checkpoints, the options and the seed, except its
``"timing"`` key (wall time and machine). ``docs/make_nn_results.py`` and
``mdm-exact figure learned`` read it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import read_json_object, write_atomic
from .._utils import (
    MASK,
    as_rng,
    check_memory,
    check_positive_int,
    json_ready,
    kl_divergence,
    progress_bar,
)
from ..errors import ArgumentError, ArgumentTypeError, MissingFileError
from ..estimate import Estimate, mean_interval
from ..languages import Language
from ..likelihood import KL_METHOD, log_likelihood
from ..metrics import generative_log_perplexity, sequence_error_rate
from ..policies import Policy, is_policy
from ..posterior import posterior_marginals
from ..sampling import Denoiser, Oracle, call_denoiser, sample
from ..schedules import Schedule
from .model import model_inputs
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

RESULTS_FILE = "results.json"
"""Name of the results JSON ``evaluate_run`` writes in the run directory."""

RESULTS_FORMAT = "mdm_exact.nn.results/1"
"""``"format"`` of the results JSON (docs/cli.md lists its keys)."""

# Distinct streams of one seed: schedules (with N), the AR baseline, the learning error, the
# policies' samples (with the policy's index) and the x ~ q of their KL (same index).
_SCHEDULE_STREAM, _AR_STREAM, _LEARNING_STREAM, _POLICY_STREAM, _KL_STREAM = 1, 2, 3, 4, 5
_AR_KL_STREAM = 6


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


def _quality(language: Language, tokens: np.ndarray
             ) -> tuple[Estimate, Estimate | None, Estimate]:
    """(gen log-ppl, the same over the in-support samples or None, SER) of samples of p."""
    valid = np.asarray(language.in_support(tokens))
    per_seq = -np.asarray(language.log_prob(tokens[valid])) / tokens.shape[1]
    return (generative_log_perplexity(language, tokens),
            mean_interval(per_seq) if per_seq.size >= 2 else None,
            sequence_error_rate(language, tokens))


def _score(language: Language, gen: Generation, steps: int, model: str, expected_nfe: float
           ) -> ScheduleRow:
    gen_log_ppl, valid, ser = _quality(language, gen.tokens)
    return ScheduleRow(
        steps=steps,
        model=model,
        nfe_ddpm=steps,
        nfe_cache=float(gen.nfe.mean()),
        expected_nfe=float(expected_nfe),
        gen_log_ppl=gen_log_ppl,
        gen_log_ppl_valid=valid,
        ser=ser,
    )


@dataclass(frozen=True)
class PolicyRow:
    """One model sampled under an adaptive policy and scored against q.

    ``policy``: the policy's ``name``; ``model``: ``"mdm"`` or ``"oracle"``; ``nfe``: mean
    denoiser calls per sequence (every call reveals at least one position); ``gen_log_ppl``,
    ``gen_log_ppl_valid``, ``ser``: as in ``ScheduleRow``. ``kl``: KL(q || p) in nats per
    sequence, exact log q(x) - log p(x) averaged over x ~ q (t interval, clipped at 0, inf as
    soon as one p(x) = 0); ``kl_per_token``: the same / L; both None for a policy with no unique
    trajectory (RandomTopK), ``kl_note`` then says why.
    """

    policy: str
    model: str
    nfe: float
    gen_log_ppl: Estimate
    gen_log_ppl_valid: Estimate | None
    ser: Estimate
    kl: Estimate | None
    kl_per_token: Estimate | None
    kl_note: str | None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def policy_kl(language: Language, policy: Policy, denoiser: Denoiser, x: np.ndarray
              ) -> tuple[Estimate, Estimate]:
    """KL(q || p) per sequence and per token for a deterministic ``policy``: the mean of the exact
    log q(x) - log p(x) over the rows of ``x`` (num, L) drawn from q, Lemma B.2's left-hand side.

    log p(x) is ``likelihood.log_likelihood(language, policy, x, denoiser)``; a t interval at
    95%, clipped at 0 (KL >= 0); infinite as soon as one p(x) = 0.
    """
    return _kl_from_log_p(language, x, log_likelihood(language, policy, x, denoiser))


def _kl_from_log_p(language: Language, x: np.ndarray, log_p: np.ndarray
                   ) -> tuple[Estimate, Estimate]:
    """KL(q || p) per sequence and per token from x (num, L) ~ q and the exact log p(x) of each
    row: the mean of log q(x) - log p(x), a t interval at 95% clipped at 0 (KL >= 0); infinite
    as soon as one p(x) = 0."""
    gap = np.asarray(language.log_prob(x), dtype=np.float64) - log_p
    if np.all(np.isfinite(gap)):
        est = mean_interval(gap, domain=(0.0, math.inf))
        kl = Estimate(est.value, est.low, est.high, KL_METHOD, est.confidence, est.num_samples)
    else:
        kl = Estimate(math.inf, math.inf, math.inf, KL_METHOD, 0.95, gap.size)
    return kl, kl.scaled(1.0 / x.shape[1])


def autoregressive_kl(language: Language, ar: TorchDenoiser, x: np.ndarray
                      ) -> tuple[Estimate, Estimate]:
    """KL(q || p_AR) per sequence and per token of an autoregressive model: the mean of the exact
    log q(x) - log p_AR(x) over the rows of ``x`` (num, L) drawn from q, with
    log p_AR(x) = sum_j log p_AR(x_j | x_<j) from one forward pass per chunk of rows (log-softmax
    of the float32 logits in float64). Per token it is the model's cross-entropy minus H(q)/L,
    with the sampling noise of log q(x) removed; a t interval at 95%, clipped at 0."""
    import torch

    if not isinstance(ar, TorchDenoiser) or ar.config.kind != "ar":
        raise ArgumentTypeError(f"ar must be a TorchDenoiser of an autoregressive model, got "
                                f"{ar!r}")
    arr = np.asarray(x, dtype=np.int64)
    log_p = np.empty(arr.shape[0])
    with torch.no_grad():
        for start in range(0, arr.shape[0], ar.batch_size):
            chunk = torch.from_numpy(arr[start:start + ar.batch_size]).to(ar.device)
            logits = ar.model(model_inputs(ar.config, chunk)).float().double()
            picked = torch.log_softmax(logits, dim=-1).gather(-1, chunk[..., None])[..., 0]
            log_p[start:start + chunk.shape[0]] = picked.sum(dim=1).cpu().numpy()
    return _kl_from_log_p(language, arr, log_p)


def _score_policy(language: Language, policy: Policy, model: str, tokens: np.ndarray,
                  nfe: np.ndarray, kl: tuple[Estimate, Estimate] | None) -> PolicyRow:
    gen_log_ppl, valid, ser = _quality(language, tokens)
    return PolicyRow(
        policy=policy.name, model=model, nfe=float(nfe.mean()), gen_log_ppl=gen_log_ppl,
        gen_log_ppl_valid=valid, ser=ser,
        kl=None if kl is None else kl[0], kl_per_token=None if kl is None else kl[1],
        kl_note=None if kl is not None else "n/a: a random policy has no unique trajectory, "
                                             "so no exact log p(x)",
    )


@dataclass(frozen=True)
class Evaluation:
    """A full report: ``rows`` in order of N (MDM then Oracle), then the AR row if any;
    ``policy_rows``: per policy, the MDM then the Oracle."""

    language: str
    length: int
    num_samples: int
    seed: int
    schedule: str
    entropy_rate: float
    rows: tuple[ScheduleRow, ...]
    learning_error: LearningError | None
    policy_rows: tuple[PolicyRow, ...] = ()
    ar_kl: Estimate | None = None
    ar_kl_per_token: Estimate | None = None

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
            "policy_rows": [row.as_dict() for row in self.policy_rows],
            "ar_kl": None if self.ar_kl is None else asdict(self.ar_kl),
            "ar_kl_per_token": None if self.ar_kl_per_token is None
            else asdict(self.ar_kl_per_token),
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
        if self.ar_kl_per_token is not None:
            lines += ["", f"AR excess KL(q || p_AR) / L = {_interval(self.ar_kl_per_token)} "
                      "nats/token (its cross-entropy minus H(q)/L; exact per x ~ q)"]
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
        if self.policy_rows:
            header = (f"{'policy':<22} {'model':<6} {'NFE':>6} {'gen log-ppl [95%]':>24} "
                      f"{'SER [95%]':>24} {'KL(q||p) per token [95%]':>26}")
            lines += ["", "adaptive policies (NFE = mean denoiser calls per sequence; KL exact "
                      "per sample, Monte Carlo over x ~ q, nats/token):", header,
                      "-" * len(header)]
            for r in self.policy_rows:
                kl = "n/a (random policy)" if r.kl_per_token is None else _interval(
                    r.kl_per_token)
                lines.append(f"{r.policy:<22} {r.model:<6} {r.nfe:>6.2f} "
                             f"{_interval(r.gen_log_ppl):>24} {_interval(r.ser):>24} "
                             f"{kl:>26}")
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


def _check_context(name: str, denoiser: Denoiser | None, length: int) -> None:
    """Refuse a learned ``denoiser`` whose context (``config.max_length``) is below ``length``."""
    context = getattr(getattr(denoiser, "config", None), "max_length", None)
    if isinstance(context, int) and length > context:
        raise ArgumentError(f"length must be <= the {name} model's context (max_length) "
                            f"{context}, got {length}")


def _check_policies(policies, length: int) -> tuple[Policy, ...]:
    out = tuple(policies)
    for policy in out:
        if not is_policy(policy):
            raise ArgumentTypeError(f"policies must hold policies of mdm_exact.policies, got "
                                    f"{type(policy).__name__}")
        policy.check_length(length)
    return out


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
    policies=(),
    progress: bool = False,
) -> Evaluation:
    """Score ``mdm`` and the Oracle with ddpm_cache on ``Schedule.named(schedule, N)`` for each N
    in ``steps``, ``ar`` left to right, and ``mdm``'s learning error; all reproducible from
    ``seed``. Without ``mdm``, only the AR row (and no Oracle rows) is produced. ``policies``
    (adaptive rules of ``mdm_exact.policies``, needing ``mdm``): the MDM and the Oracle sampled
    under each, with the same seed, and for a deterministic rule each one's KL(q || p) from
    ``num_samples`` x ~ q (``policy_kl``). ``progress`` shows a tqdm bar on stderr (after 2 s)
    counting the sampling steps of every row (L per policy row and per KL), the learning
    error's masking levels and the entropy rate.

    Refused before any work: a learned model (``TorchDenoiser``) whose context is below
    ``length``, a policy whose block is longer than ``length``, and a row above the memory
    budget: the plan of N steps (a few float64 arrays of N + 1 entries) and the samples with
    their (num, L, V) probabilities.
    """
    length = check_positive_int("length", length)
    num = check_positive_int("num_samples", num_samples, 2)
    seed = check_positive_int("seed", seed, 0)
    ns = [check_positive_int("steps", n) for n in np.atleast_1d(np.asarray(steps, dtype=object))]
    if mdm is None and ar is None:
        raise ArgumentError("evaluate needs an mdm or an ar denoiser")
    _check_context("mdm", mdm, length)
    _check_context("ar", ar, length)
    policies = _check_policies(policies, length)
    if policies and mdm is None:
        raise ArgumentError("policies need an mdm denoiser (the AR model decodes left to right)")
    per_sample = float(num) * length * (8.0 * language.vocab_size + 32.0)
    check_memory(f"evaluate with steps={max(ns)}", 32.0 * (max(ns) + 1) + per_sample,
                 argument="steps or num_samples")
    jobs = [(n, name) for n in ns for name in ("mdm", "oracle")] if mdm is not None else []
    if ar is not None:
        jobs.append((length, "ar"))
    rows = []
    oracle = Oracle(language) if mdm is not None else None
    # Bar units: the N steps of each row (L for AR), one per masking level, L per policy row
    # and per KL, one for H(q).
    sizes = [length if name == "ar" else n for n, name in jobs]
    policy_units = sum(2 * length * (2 if p.deterministic else 1) for p in policies)
    total = (sum(sizes) + (len(DEFAULT_TIMES) if mdm is not None else 0) + policy_units + 1)
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
        policy_rows = []
        for index, policy in enumerate(policies):
            x = (language.sample(num, length, np.random.default_rng([seed, _KL_STREAM, index]))
                 if policy.deterministic else None)
            for name, den in (("mdm", mdm), ("oracle", oracle)):
                bar.set_postfix_str(f"{name} {policy.name}", refresh=False)
                res = sample(language, policy, length, num, _Counted(den, bar),
                             np.random.default_rng([seed, _POLICY_STREAM, index]))
                kl = None if x is None else policy_kl(language, policy, _Counted(den, bar), x)
                policy_rows.append(_score_policy(language, policy, name, res.tokens,
                                                 res.nfe_per_row, kl))
                done += length * (2 if policy.deterministic else 1)
                bar.update(max(0, done - bar.n))
        le = None
        if mdm is not None:
            bar.set_postfix_str("learning error", refresh=False)
            le = learning_error(language, _Counted(mdm, bar), length,
                                num_sequences=learning_error_sequences,
                                rng=np.random.default_rng([seed, _LEARNING_STREAM]))
        ar_kl = (None, None)
        if isinstance(ar, TorchDenoiser) and ar.config.kind == "ar":
            bar.set_postfix_str("ar KL", refresh=False)
            ar_kl = autoregressive_kl(language, ar, language.sample(
                num, length, np.random.default_rng([seed, _AR_KL_STREAM])))
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
        policy_rows=tuple(policy_rows),
        ar_kl=ar_kl[0],
        ar_kl_per_token=ar_kl[1],
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checkpoint_info(run_dir: Path, kind: str) -> dict[str, Any]:
    """What identifies a trained model: its configs, the step reached, the weights' sha256."""
    info = read_json_object(run_dir / f"{kind}.json", "the run's config file")
    return {"run": run_dir.name, "model": info.get("model"), "train": info.get("train"),
            "step": info.get("step"), "sha256": _sha256(run_dir / f"{kind}.pt")}


def results_data(evaluation: Evaluation, language: Language, models: dict[str, Any],
                 policies: tuple[Policy, ...], wall_seconds: float, device: str) -> dict[str, Any]:
    """The results JSON (``RESULTS_FORMAT``) as a dict: everything but ``"timing"`` is a
    function of the checkpoints, the options and the seed."""
    import torch

    return json_ready({
        "format": RESULTS_FORMAT,
        "language": language.to_dict(),
        "models": models,
        "policies": [policy.to_dict() for policy in policies],
        "evaluation": evaluation.as_dict(),
        "timing": {"wall_seconds": wall_seconds, "device": device,
                   "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                   "python": platform.python_version(), "machine": platform.platform()},
    })


def write_results(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` (``results_data``) as JSON to ``path`` atomically; returns the path."""
    path = Path(path)
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))
    return path


def evaluate_run(
    run_dir: str | Path,
    steps,
    num_samples: int,
    *,
    seed: int = 0,
    ar_dir: str | Path | None = None,
    length: int | None = None,
    schedule: str = "linear",
    policies=(),
    device: str | None = "auto",
    save: bool = True,
    progress: bool = False,
) -> Evaluation:
    """``evaluate`` on the checkpoints of a run directory (``train.load_model``).

    The MDM is ``run_dir``'s; the AR baseline is ``ar_dir``'s when given, else ``run_dir``'s if
    it holds one. ``length`` defaults to the trained length and may not exceed the context
    (refused before any model is loaded). With ``save``, the report is written to
    ``run_dir / RESULTS_FILE`` (``results_data``), replacing an earlier one.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingFileError(f"no run directory at {str(run_dir)!r}")
    has_mdm = (run_dir / "mdm.pt").exists()
    if ar_dir is None and (run_dir / "ar.pt").exists():
        ar_dir = run_dir
    if not has_mdm and ar_dir is None:
        raise MissingFileError(f"{str(run_dir)!r} holds no trained model (mdm.pt or ar.pt)")
    if save and not os.access(run_dir, os.W_OK | os.X_OK):
        raise ArgumentError(f"run directory {str(run_dir)!r} is not writable, so its "
                            f"{RESULTS_FILE} cannot be saved (pass save=False / --no-save)")
    kinds = ([("mdm", run_dir)] if has_mdm else []) + ([] if ar_dir is None
                                                       else [("ar", Path(ar_dir))])
    first_kind, kind_dir = kinds[0]
    info = read_json_object(kind_dir / f"{first_kind}.json", "the run's config file")
    trained = info.get("train", {}).get("length") if isinstance(info.get("train"), dict) else None
    if isinstance(trained, bool) or not isinstance(trained, int):
        raise ArgumentError(f"{str(kind_dir / (first_kind + '.json'))!r} has no trained length")
    length = trained if length is None else check_positive_int("length", length)
    for kind, directory in kinds:
        model_info = read_json_object(directory / f"{kind}.json", "the run's config file")
        context = (model_info.get("model") or {}).get("max_length") if isinstance(
            model_info.get("model"), dict) else None
        if isinstance(context, int) and length > context:
            raise ArgumentError(f"length must be <= the {kind} model's context (max_length) "
                                f"{context}, got {length}")
    policies = _check_policies(policies, length)
    mdm_model, language = load_model(run_dir, "mdm", device) if has_mdm else (None, None)
    ar_model = None
    if ar_dir is not None:
        ar_model, ar_language = load_model(ar_dir, "ar", device)
        if language is None:
            language = ar_language
        elif json.dumps(ar_language.to_dict()) != json.dumps(language.to_dict()):
            raise ArgumentError(f"the AR run {str(ar_dir)!r} was trained on a different language "
                             f"than {str(run_dir / LANGUAGE_FILE)!r}")
    report = evaluate(
        language, length, steps, num_samples,
        mdm=None if mdm_model is None else TorchDenoiser(mdm_model),
        ar=None if ar_model is None else TorchDenoiser(ar_model),
        schedule=schedule, seed=seed, policies=policies, progress=progress,
    )
    if save:
        models = {kind: _checkpoint_info(directory, kind) for kind, directory in kinds}
        dev = next(m for m in (mdm_model, ar_model) if m is not None).cos.device
        write_results(run_dir / RESULTS_FILE,
                      results_data(report, language, models, policies,
                                   time.perf_counter() - started, str(dev)))
    return report
