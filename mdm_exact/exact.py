"""The exact output distribution of factorized parallel unmasking, for small lengths.

``output_distribution`` returns p over V^L exactly; ``exact_metrics`` turns it into KL(q||p), log
TER (eq. 4), generative log-perplexity, SER (eq. 5), H(q) and the exact Jensen bound
E_tau KL(q || p_tau) of Lemma B.2 (computed through the Lemma B.3 decomposition, §12).

How p is computed. A denoiser sees only the partially revealed sequence (no time input), so the
process is a Markov chain on partial states in {MASK, 0..V-1}^L, of which there are (V+1)^L:

- the denoiser is called once, in one batch, on every partial state;
- a step moves state s to s + (tokens y_B on a set B of its masked positions) with weight
  prod_{j in B} p_theta(y_j | s) times the plan's probability of revealing exactly B:
  h^|B| (1-h)^(m-|B|) with the hazard h = p^(k) / sum_{j>=k} p^(j) for a ``Schedule`` (positions
  are independent, so no N^L enumeration of step assignments), [|B| = m_k] / C(m, m_k) for a
  ``FixedCountPlan``, [B = tau_k] for a ``DeterministicPlan``;
- the (state, successor) pairs number at most (2V+1)^L and are built once; each step is one
  weighted ``bincount``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ._utils import MASK, check_memory, table_bytes
from .languages import Language
from .posterior import posterior
from .sampling import Denoiser, Oracle, call_denoiser, resolve_denoiser
from .schedules import FixedCountPlan, Plan, Schedule, check_plan


def _estimate_bytes(vocab_size: int, length: int) -> float:
    states = table_bytes(vocab_size + 1, length, 8.0 * length * (2 * vocab_size + 2))
    return states + table_bytes(2 * vocab_size + 1, length, 48.0)


def _partial_states(vocab_size: int, length: int) -> np.ndarray:
    """(S, L) every partial sequence; digit 0 of the base-(V+1) code is MASK, digit d is token
    d-1, position 0 most significant."""
    base = vocab_size + 1
    codes = np.arange(base**length)
    digits = (codes[:, None] // base ** np.arange(length - 1, -1, -1)[None, :]) % base
    return digits - 1


def _successors(states: np.ndarray, probs: np.ndarray, vocab_size: int):
    """Every (state, successor) pair with its product of denoiser marginals, the number of newly
    revealed positions and their bitmask. Pairs of weight zero are dropped."""
    num, length = states.shape
    base = vocab_size + 1
    src = np.arange(num)
    dst = src.copy()
    weight = np.ones(num)
    count = np.zeros(num, dtype=np.int64)
    mask = np.zeros(num, dtype=np.int64)
    for j in range(length):
        open_ = states[src, j] == MASK
        parts = [(src, dst, weight, count, mask)]
        o_src, o_dst, o_w = src[open_], dst[open_], weight[open_]
        o_c, o_m = count[open_], mask[open_]
        for v in range(vocab_size):
            w = o_w * probs[o_src, j, v]
            keep = w > 0
            parts.append((o_src[keep], o_dst[keep] + (v + 1) * base ** (length - 1 - j), w[keep],
                          o_c[keep] + 1, o_m[keep] | (1 << j)))
        src, dst, weight, count, mask = (np.concatenate(cols) for cols in zip(*parts, strict=True))
    return src, dst, weight, count, mask


def _plan_weights(plan: Plan, step: int, count, open_count, mask):
    """Per pair, the probability that the plan reveals exactly that set at ``step``."""
    if isinstance(plan, Schedule):
        h = plan.hazards[step]
        return h**count * (1.0 - h) ** (open_count - count)
    if isinstance(plan, FixedCountPlan):
        m = int(plan.counts[step])
        ways = np.array([float(math.comb(o, m)) for o in range(int(open_count.max()) + 1)])
        ways = ways[open_count]
        return np.where((count == m) & (ways > 0), 1.0 / np.maximum(ways, 1.0), 0.0)
    tau = int(np.bitwise_or.reduce(1 << plan.sets[step])) if plan.sets[step].size else 0
    return (mask == tau).astype(float)


def _step_is_empty(plan: Plan, step: int) -> bool:
    if isinstance(plan, Schedule):
        return plan.masses[step] == 0
    if isinstance(plan, FixedCountPlan):
        return plan.counts[step] == 0
    return plan.sets[step].size == 0


@dataclass(frozen=True)
class _Tables:
    states: np.ndarray  # (S, L)
    probs: np.ndarray  # (S, L, V) denoiser outputs
    open_count: np.ndarray  # (S,) masked positions per state


def _tables(language: Language, length: int, den: Denoiser, max_bytes) -> _Tables:
    v = language.vocab_size
    check_memory(
        f"the exact engine at V={v}, L={length} ((V+1)^L = {v + 1}^{length} partial states)",
        _estimate_bytes(v, length),
        max_bytes,
    )
    states = _partial_states(v, length)
    probs = call_denoiser(den, states, v)
    return _Tables(states, probs, (states == MASK).sum(axis=1))


def _distribution(plan: Plan, tables: _Tables, vocab_size: int) -> np.ndarray:
    src, dst, weight, count, mask = _successors(tables.states, tables.probs, vocab_size)
    open_src = tables.open_count[src]
    prob = np.zeros(tables.states.shape[0])
    prob[0] = 1.0  # state code 0: everything masked
    for k in range(plan.num_steps):
        if _step_is_empty(plan, k):
            continue
        w = weight * _plan_weights(plan, k, count, open_src, mask)
        prob = np.bincount(dst, weights=prob[src] * w, minlength=prob.size)
    full = tables.open_count == 0
    length = tables.states.shape[1]
    out = np.zeros(vocab_size**length)
    idx = np.ravel_multi_index(tuple(tables.states[full].T), (vocab_size,) * length)
    out[idx] = prob[full]
    return out.reshape((vocab_size,) * length)


def output_distribution(
    language: Language,
    schedule: Plan,
    length: int,
    denoiser: Denoiser | None = None,
    *,
    max_bytes: float | None = None,
) -> np.ndarray:
    """Exact distribution (V,)*L of the sequences factorized parallel unmasking produces.

    ``schedule``: a Schedule, FixedCountPlan or DeterministicPlan; ``denoiser``: defaults to the
    Oracle of ``language``. Refuses, before any work, sizes above the memory budget
    (``max_bytes``, default ``mdm_exact.DEFAULT_MAX_BYTES``),
    with the estimate: memory grows like (2V+1)^L.
    """
    plan = check_plan(schedule)
    length = plan.check_length(length)
    den = resolve_denoiser(language, denoiser)
    return _distribution(plan, _tables(language, length, den, max_bytes), language.vocab_size)


def _reveal_weights(plan: Plan, states: np.ndarray) -> np.ndarray:
    """(S, L): sum_k P(exactly the revealed set of state s is revealed before step k, and
    position j is revealed at step k), zero at revealed positions."""
    num, length = states.shape
    revealed = states != MASK
    r = revealed.sum(axis=1)
    out = np.zeros((num, length))
    if isinstance(plan, Schedule):
        p, before = plan.masses, plan.revealed_before
        after = np.clip(1.0 - before, 0.0, None)
        per_r = np.array([(before**rr * p * after ** (length - rr - 1)).sum()
                          for rr in range(length)] + [0.0])
        out[:] = per_r[r][:, None]
    elif isinstance(plan, FixedCountPlan):
        done = np.concatenate([[0], np.cumsum(plan.counts)[:-1]])
        per_r = np.zeros(length + 1)
        for c, m in zip(done, plan.counts, strict=True):
            if m:
                per_r[c] += m / (math.comb(length, c) * (length - c))
        out[:] = per_r[r][:, None]
    else:
        seen = np.zeros(length, dtype=bool)
        for tau in plan.sets:
            if tau.size:
                match = np.all(revealed == seen, axis=1)
                out[np.ix_(match, tau)] += 1.0
                seen[tau] = True
    return np.where(revealed, 0.0, out)


@dataclass(frozen=True)
class ExactMetrics:
    """Exact quantities of factorized sampling at one length (nats).

    ``kl``: KL(q || p) per sequence; ``log_ter``: eq. 4, E_q[-log p(x)] / L = (H + KL) / L;
    ``log_ter_q``: the optimum H / L; ``gen_log_ppl``: E_p[-log q(x)] / L (inf if p leaves
    supp q); ``ser``: eq. 5, 1 - p(supp q); ``jensen_bound``: E_tau KL(q || p_tau) per sequence
    (Lemma B.2); ``gap``: jensen_bound - kl >= 0; ``entropy``: H(q) per sequence.
    """

    kl: float
    log_ter: float
    log_ter_q: float
    gen_log_ppl: float
    ser: float
    jensen_bound: float
    gap: float
    entropy: float
    length: int
    total_mass: float

    def as_dict(self) -> dict:
        """The fields as a dict (the JSON of ``mdm-exact exact``)."""
        return asdict(self)


def exact_metrics(
    language: Language,
    schedule: Plan,
    length: int,
    denoiser: Denoiser | None = None,
    *,
    max_bytes: float | None = None,
) -> ExactMetrics:
    """All exact metrics of ``output_distribution`` (see ``ExactMetrics``).

    The Jensen bound uses the Lemma B.3 decomposition: E_tau KL(q || p_tau) = -H(q) -
    sum_{partial s} q(s) sum_{j masked} w(s, j) sum_v q(v | s, j) log p_theta(v | s, j), with w the
    plan's probability of revealing j right after exactly the revealed set of s.
    """
    plan = check_plan(schedule)
    length = plan.check_length(length)
    den = resolve_denoiser(language, denoiser)
    v = language.vocab_size
    tables = _tables(language, length, den, max_bytes)
    p = _distribution(plan, tables, v).ravel()
    full = np.array(np.unravel_index(np.arange(v**length), (v,) * length)).T
    log_q = np.asarray(language.log_prob(full), dtype=np.float64)
    support = np.asarray(language.in_support(full))
    q = np.where(support, np.exp(log_q), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = float(-(q[support] * log_q[support]).sum())
        kl = float((q[support] * (log_q[support] - np.log(p[support]))).sum())
        off = (~support) & (p > 0)
        gen = float("inf") if off.any() else float(-(p[support] * log_q[support]).sum() / length)
    qs = np.exp(np.asarray(language.log_prob(tables.states), dtype=np.float64))
    if isinstance(den, Oracle):
        oracle_probs = tables.probs  # the oracle's outputs are already q's marginals
    else:
        post = posterior(language, tables.states)
        oracle_probs = np.where(post.valid[:, None, None], post.marginals, 0.0)
    weights = _reveal_weights(plan, tables.states)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = np.where(oracle_probs > 0, oracle_probs * np.log(tables.probs), 0.0).sum(axis=2)
        # Only pairs the plan can reach count: a -inf cross term of weight 0 is 0, not NaN.
        reached = np.where(weights > 0, weights * cross, 0.0)
    live = qs > 0
    expected_log_p = float((qs[live, None] * reached[live]).sum())
    jensen = -entropy - expected_log_p
    return ExactMetrics(
        kl=kl,
        log_ter=(entropy + kl) / length,
        log_ter_q=entropy / length,
        gen_log_ppl=gen,
        ser=float(1.0 - p[support].sum()),
        jensen_bound=jensen,
        gap=jensen - kl,
        entropy=entropy,
        length=length,
        total_mass=float(p.sum()),
    )


def interval_parity_ser(interval: int, length: int, schedule: Plan, *,
                        eps_learning: float = 0.0) -> float:
    """Exact SER of Example C.7 at any length, O(N l^2) (L = 10^6, N = 10^5 in milliseconds).

    ``eps_learning = 0`` is the oracle (a colliding pair is wrong with probability 1/2); a
    positive value is Example C.7's worst model under Assumption 4.1, whose pair bits are biased
    by sqrt(eps_learning / 2) so that a colliding pair errs with probability 1/2 - eps_learning.
    Computed by ``mdm_exact.theory.interval.oracle_ser``.
    """
    from .theory.interval import collision_error_probability, oracle_ser

    p_e = 0.5 if eps_learning == 0 else collision_error_probability(eps_learning)
    return oracle_ser(check_plan(schedule), interval, length, p_e=p_e)
