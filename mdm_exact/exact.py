"""The exact output distribution of factorized parallel unmasking, for small lengths.

``output_distribution`` returns p over V^L exactly; ``exact_metrics`` turns it into KL(q||p), the
TER gap log TER(p) - log TER(q) = KL / L and log TER (eq. 4), generative log-perplexity, SER
(eq. 5), H(q) and the exact Jensen bound E_tau KL(q || p_tau) of Lemma B.2 (computed through the
Lemma B.3 decomposition, docs/theory/lemma-b3.md); every quantity of a whole sequence also per
token (``_per_token``).

How p is computed. A denoiser sees only the partially revealed sequence (no time input), so the
process is a Markov chain on partial states in {MASK, 0..V-1}^L, of which there are (V+1)^L:

- the denoiser is called once, in one batch, on every partial state;
- a step moves state s to s + (tokens y_B on a set B of its masked positions) with weight
  prod_{j in B} p_theta(y_j | s) times the plan's probability of revealing exactly B:
  h^|B| (1-h)^(m-|B|) with the hazard h = p^(k) / sum_{j>=k} p^(j) for a ``Schedule`` (positions
  are independent, so no N^L enumeration of step assignments), [|B| = m_k] / C(m, m_k) for a
  ``FixedCountPlan``, [B = tau_k] for a ``DeterministicPlan``;
- the (state, successor) pairs number at most (2V+1)^L and are built once; each step is one
  weighted ``bincount``;
- a Schedule with more non-empty steps than 2^L - 1 is run through the compositions of L
  instead (``_by_compositions``), so N = 10^5 steps cost no more than 2^L - 1 pushes.

Numerics: the propagation runs in linear space when the smallest positive factors of every
step multiply to at least ``posterior.TINY`` (every product is then a normal float, exact to
rounding, and zeros are exact); otherwise (tiny or subnormal denoiser outputs, masses or state
probabilities) the whole propagation is redone in log space, where nothing underflows and an
impossible sequence is exactly -inf. Metrics are sums of non-negative terms (SER is the mass off
the support; see ``_kl_terms``), so every reported value lies in its domain.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from ._utils import MASK, check_memory, progress_bar, shannon_entropy, table_bytes
from .languages import Language
from .policies import Policy, RandomTopK, TopK, is_policy
from .posterior import TINY, posterior
from .sampling import Denoiser, Oracle, call_denoiser, resolve_denoiser
from .schedules import FixedCountPlan, Plan, Schedule, check_plan

_CHUNK_PAIRS = 2**19
"""Pairs processed at once when building and pushing (bounds the temporaries to ~40 MiB)."""


def output_distribution_bytes(vocab_size: int, length: int) -> float:
    """Upper bound on the engine's peak memory at V = ``vocab_size``, L = ``length``.

    With S = (V+1)^L partial states and P <= (2V+1)^L successor pairs, the largest of three
    phases, each counting every array alive at its peak: the denoiser call (states (S, L)
    int64, the read-only copy handed to the denoiser and the posterior's own copy of it, the
    (S, L, V) output and its renormalised copy); the propagation (states, the (S, L, V) output
    table, the pairs at 27 bytes each (int32 source and successor, float64 weight, int8 count,
    int16 class, int32 bitmask), the push temporaries (16 bytes per pair of a chunk) and L + 4
    state vectors); the metrics (states, output table, (S, L) reveal weights, a chunk of
    posterior tables, and the V^L sequence tables). Plus a fixed 64 MiB for chunks.
    """
    s = table_bytes(vocab_size + 1, length, 1.0)
    pairs = table_bytes(2 * vocab_size + 1, length, 1.0)
    seqs = table_bytes(vocab_size, length, 1.0)
    table = 8.0 * s * length * (vocab_size + 1) + 8.0 * s  # states, outputs, open counts
    call = 8.0 * s * length * (3 + 2 * vocab_size)
    propagate = table + 27.0 * pairs + 8.0 * s * (length + 4)
    metrics = table + 8.0 * s * (length + 4) + 8.0 * seqs * (length + 8)
    return max(call, propagate, metrics) + 2.0**26


def _partial_states(vocab_size: int, length: int) -> np.ndarray:
    """(S, L) every partial sequence; digit 0 of the base-(V+1) code is MASK, digit d is token
    d-1, position 0 most significant."""
    base = vocab_size + 1
    codes = np.arange(base**length)
    digits = (codes[:, None] // base ** np.arange(length - 1, -1, -1)[None, :]) % base
    return digits - 1


def _successors(states: np.ndarray, probs: np.ndarray, vocab_size: int, *, log: bool = False):
    """Every (state, successor) pair with its product of denoiser marginals (its log with
    ``log``), the number of newly revealed positions and their bitmask. Pairs whose marginal
    is zero are dropped (so a weight is never an underflowed 0 mistaken for a zero).

    Built in two passes over chunks of states, counting first, so the result is allocated once
    at its final size: int32 states (int64 past 2^31), int8 counts, int32 masks (int64 past
    L = 31)."""
    num, length = states.shape
    base = vocab_size + 1
    masked = states == MASK
    succ = np.ones(num, dtype=np.float64)
    step = max(1, _CHUNK_PAIRS // max(1, length * vocab_size))
    for a in range(0, num, step):
        nz = (probs[a:a + step] > 0).sum(axis=2)
        succ[a:a + step] = np.where(masked[a:a + step], 1 + nz, 1).prod(axis=1, dtype=np.float64)
    total = int(succ.sum())
    index = np.int32 if max(num, total) < 2**31 else np.int64
    src_all = np.empty(total, dtype=index)
    dst_all = np.empty(total, dtype=index)
    w_all = np.empty(total, dtype=np.float64)
    count_all = np.empty(total, dtype=np.int8)
    mask_all = np.empty(total, dtype=np.int32 if length < 31 else np.int64)
    ends = np.cumsum(succ).astype(np.int64)
    a, at = 0, 0
    while a < num:
        # As many states as fit one chunk of pairs (at least one).
        b = max(a + 1, int(np.searchsorted(ends, at + _CHUNK_PAIRS, side="right")))
        src = np.arange(a, b, dtype=np.int64)
        dst = src.copy()
        weight = np.zeros(src.size) if log else np.ones(src.size)
        count = np.zeros(src.size, dtype=np.int64)
        mask = np.zeros(src.size, dtype=np.int64)
        for j in range(length):
            open_ = states[src, j] == MASK
            parts = [(src, dst, weight, count, mask)]
            o_src, o_dst, o_w = src[open_], dst[open_], weight[open_]
            o_c, o_m = count[open_], mask[open_]
            for v in range(vocab_size):
                pv = probs[o_src, j, v]
                keep = pv > 0
                w = o_w[keep] + np.log(pv[keep]) if log else o_w[keep] * pv[keep]
                parts.append((o_src[keep], o_dst[keep] + (v + 1) * base ** (length - 1 - j), w,
                              o_c[keep] + 1, o_m[keep] | (1 << j)))
            src, dst, weight, count, mask = (np.concatenate(c) for c in zip(*parts, strict=True))
        n = src.size
        src_all[at:at + n], dst_all[at:at + n], w_all[at:at + n] = src, dst, weight
        count_all[at:at + n], mask_all[at:at + n] = count, mask
        a, at = b, at + n
    return src_all, dst_all, w_all, count_all, mask_all


@dataclass(frozen=True)
class _Pairs:
    """The successor pairs of a table, in linear (``log=False``) or log space."""

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray  # product of denoiser marginals, or its log
    cls: np.ndarray  # open positions of the source * (L + 1) + newly revealed ones
    mask: np.ndarray  # bitmask of the newly revealed positions
    log: bool
    min_weight: float  # smallest positive linear weight (1 in log space)


def _pairs(tables: _Tables, vocab_size: int, log: bool) -> _Pairs:
    src, dst, weight, count, mask = _successors(tables.states, tables.probs, vocab_size, log=log)
    length = tables.states.shape[1]
    cls = np.empty(src.size, dtype=np.int16)
    for a in range(0, src.size, _CHUNK_PAIRS):  # chunked: no int64 temporaries per pair
        sl = slice(a, a + _CHUNK_PAIRS)
        cls[sl] = tables.open_count[src[sl]] * (length + 1) + count[sl]
    del count
    low = 1.0 if log or weight.size == 0 else float(weight.min())
    return _Pairs(src, dst, weight, cls, mask, log, low)


def _class_weights(plan: Plan, step: int, length: int) -> np.ndarray:
    """((L+1)^2,) per class (open positions o, newly revealed c): the probability that the plan
    reveals exactly a given c-subset of the o open positions at ``step`` (Schedule, FixedCount)."""
    o, c = np.divmod(np.arange((length + 1) ** 2), length + 1)
    if isinstance(plan, Schedule):
        h = plan.hazards[step]
        with np.errstate(invalid="ignore"):
            out = np.where(c <= o, h ** c * (1.0 - h) ** np.maximum(o - c, 0), 0.0)
        return out
    m = int(plan.counts[step])
    ways = np.array([float(math.comb(int(oo), m)) if m <= oo else 0.0 for oo in o])
    return np.where((c == m) & (ways > 0), 1.0 / np.maximum(ways, 1.0), 0.0)


def _push(vec: np.ndarray, pairs: _Pairs, cw: np.ndarray | None, tau: int | None) -> np.ndarray:
    """One step of the chain: new[t] = sum over pairs (s -> t) of vec[s] * weight * factor, the
    factor being ``cw[class]`` or [mask == tau]; in log space the same as a log-sum-exp."""
    size = vec.size
    n = pairs.src.size
    chunks = range(0, n, _CHUNK_PAIRS)

    def factor(sl):
        if cw is not None:
            return cw[pairs.cls[sl]]
        hit = pairs.mask[sl] == tau
        return np.where(hit, 0.0, -np.inf) if pairs.log else hit.astype(np.float64)

    if not pairs.log:
        out = np.zeros(size)
        for a in chunks:
            sl = slice(a, a + _CHUNK_PAIRS)
            contrib = vec[pairs.src[sl]]
            contrib *= pairs.weight[sl]
            contrib *= factor(sl)
            out += np.bincount(pairs.dst[sl], weights=contrib, minlength=size)
        return out
    top = np.full(size, -np.inf)
    for a in chunks:
        sl = slice(a, a + _CHUNK_PAIRS)
        np.maximum.at(top, pairs.dst[sl], vec[pairs.src[sl]] + pairs.weight[sl] + factor(sl))
    shift = np.where(np.isfinite(top), top, 0.0)
    total = np.zeros(size)
    for a in chunks:
        sl = slice(a, a + _CHUNK_PAIRS)
        val = vec[pairs.src[sl]] + pairs.weight[sl] + factor(sl) - shift[pairs.dst[sl]]
        total += np.bincount(pairs.dst[sl], weights=np.exp(val), minlength=size)
    with np.errstate(divide="ignore"):
        return np.where(total > 0, shift + np.log(total), -np.inf)


def _smallest_positive(a: np.ndarray) -> float:
    pos = a[a > 0]
    return float(pos.min()) if pos.size else 1.0


def _step_is_empty(plan: Plan, step: int) -> bool:
    if isinstance(plan, Schedule):
        return plan.masses[step] == 0
    if isinstance(plan, FixedCountPlan):
        return plan.counts[step] == 0
    return plan.sets[step].size == 0


def _by_steps(plan: Plan, pairs: _Pairs, size: int, length: int, progress: bool):
    """The state distribution after every step (log space if ``pairs.log``); None when a
    linear-space product could leave the float range (see ``TINY``)."""
    vec = np.full(size, -np.inf) if pairs.log else np.zeros(size)
    vec[0] = 0.0 if pairs.log else 1.0  # state code 0: everything masked
    steps = [k for k in range(plan.num_steps) if not _step_is_empty(plan, k)]
    for k in progress_bar(progress, steps, desc="exact steps"):
        cw, tau = None, None
        if isinstance(plan, Schedule | FixedCountPlan):
            cw = _class_weights(plan, k, length)
            low = _smallest_positive(cw)
            if pairs.log:
                with np.errstate(divide="ignore"):
                    cw = np.log(cw)
        else:
            tau = int(np.bitwise_or.reduce(1 << plan.sets[k]))
            low = 1.0
        if not pairs.log and _smallest_positive(vec) * pairs.min_weight * low < TINY:
            return None
        vec = _push(vec, pairs, cw, tau)
    return vec


def _use_compositions(plan: Plan, length: int) -> bool:
    """Whether a Schedule runs faster through its compositions (see ``_by_compositions``):
    2^L - 1 pushes instead of one per non-empty step."""
    if not isinstance(plan, Schedule) or length > 20:
        return False
    return 2**length - 1 < int(np.count_nonzero(plan.masses))


def _by_compositions(plan: Schedule, pairs: _Pairs, size: int, length: int, progress: bool):
    """The same distribution as ``_by_steps`` for a Schedule with many steps.

    Positions pick their steps independently, so an ordered set partition (B_1, ..., B_r) of
    the positions is the sequence of reveal sets with probability
    S(b) = sum_{k_1 < ... < k_r} prod_t p^(k_t)^|B_t|, which depends only on the sizes
    b = (|B_1|, ..., |B_r|) (a composition of L). Hence p = sum_b S(b) D(b), where D(b) sums the
    sampling weights over the ordered set partitions of sizes b: a walk down the tree of
    compositions, one push per node (2^L - 1 in all, whatever the number of steps N), and S(b)
    by the recursion A_t(k) = p^(k)^b_t sum_{k' < k} A_{t-1}(k'), in log space, O(N) per node.
    """
    with np.errstate(divide="ignore"):
        log_mass = np.log(plan.masses)
    o, c = np.divmod(np.arange((length + 1) ** 2), length + 1)
    final = np.full(size, -np.inf) if pairs.log else np.zeros(size)
    start = np.full(size, -np.inf) if pairs.log else np.zeros(size)
    start[0] = 0.0 if pairs.log else 1.0
    bar = progress_bar(progress, total=2**length - 1, desc="exact compositions")

    def visit(revealed: int, vec: np.ndarray, before: np.ndarray) -> bool:
        """Adds the leaves below a node to ``final``; False if linear space would underflow.
        ``before[k]`` = log sum_{k' < k} A_{t-1}(k') (0 at the root). Depth-first, one child
        at a time, so at most 2 (L + 1) state vectors are alive."""
        nonlocal final
        opened = length - revealed
        if not pairs.log and _smallest_positive(vec) * pairs.min_weight < TINY:
            return False
        for b in range(1, opened + 1):
            hit = (o == opened) & (c == b)
            cw = np.where(hit, 0.0, -np.inf) if pairs.log else hit.astype(np.float64)
            child = _push(vec, pairs, cw, None)
            log_a = b * log_mass + before
            bar.update()
            if b < opened:
                acc = np.logaddexp.accumulate(log_a)
                if not visit(revealed + b, child, np.concatenate([[-np.inf], acc[:-1]])):
                    return False
                continue
            log_s = float(np.logaddexp.reduce(log_a))
            if pairs.log:
                final = np.logaddexp(final, log_s + child)
                continue
            weight = math.exp(log_s)
            if log_s > -math.inf and weight * _smallest_positive(child) < TINY:
                return False
            final += weight * child
        return True

    check_memory(f"the compositions of a Schedule with {plan.num_steps} steps at L={length}",
                 8.0 * plan.num_steps * (length + 3), argument="the number of steps")
    done = visit(0, start, np.zeros(plan.num_steps))
    bar.close()
    return final if done else None


@dataclass(frozen=True)
class _Tables:
    states: np.ndarray  # (S, L)
    probs: np.ndarray  # (S, L, V) denoiser outputs
    open_count: np.ndarray  # (S,) masked positions per state


def _tables(language: Language, length: int, den: Denoiser, max_bytes) -> _Tables:
    v = language.vocab_size
    check_memory(
        f"the exact engine at V={v}, L={length} ((V+1)^L = {v + 1}^{length} partial states)",
        output_distribution_bytes(v, length),
        max_bytes,
        argument="length",
    )
    states = _partial_states(v, length)
    probs = call_denoiser(den, states, v)
    return _Tables(states, probs, (states == MASK).sum(axis=1))


def _log_distribution(plan: Plan, tables: _Tables, vocab_size: int, progress: bool = False
                      ) -> np.ndarray:
    """(V^L,) log p of every full sequence (-inf exactly where p = 0): linear space when every
    product stays above ``TINY``, else log space."""
    length = tables.states.shape[1]
    size = tables.states.shape[0]
    run = _by_compositions if _use_compositions(plan, length) else _by_steps
    vec = None
    for log in (False, True):
        pairs = _pairs(tables, vocab_size, log)
        if log or pairs.min_weight >= TINY:
            vec = run(plan, pairs, size, length, progress)
        del pairs
        if vec is not None:
            break
    if not log:
        with np.errstate(divide="ignore"):
            vec = np.log(vec)
    full = tables.open_count == 0
    out = np.full(vocab_size**length, -np.inf)
    idx = np.ravel_multi_index(tuple(tables.states[full].T), (vocab_size,) * length)
    out[idx] = vec[full]
    return out


def _distribution(plan: Plan, tables: _Tables, vocab_size: int, progress: bool = False
                  ) -> np.ndarray:
    length = tables.states.shape[1]
    log_p = _log_distribution(plan, tables, vocab_size, progress)
    return np.exp(log_p).reshape((vocab_size,) * length)


def output_distribution(
    language: Language,
    schedule: Plan | Policy,
    length: int,
    denoiser: Denoiser | None = None,
    *,
    max_bytes: float | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Exact distribution (V,)*L of the sequences factorized parallel unmasking produces.

    ``schedule``: a Schedule, FixedCountPlan or DeterministicPlan; ``denoiser``: defaults to the
    Oracle of ``language``. Refuses, before any work, sizes above the memory budget
    (``max_bytes``, default ``mdm_exact.DEFAULT_MAX_BYTES``),
    with the estimate: memory grows like (2V+1)^L. ``schedule`` may be an adaptive policy
    (``mdm_exact.policies``): see ``_policy_distribution``. A Schedule with more non-empty steps
    than 2^L - 1 runs through its compositions (``_by_compositions``), so N = 10^5 steps cost
    no more than a few; ``progress`` shows a tqdm bar over the steps or compositions.
    """
    if is_policy(schedule):
        return _policy_output(language, schedule, length, denoiser, max_bytes, progress)
    plan = check_plan(schedule)
    length = plan.check_length(length)
    den = resolve_denoiser(language, denoiser)
    return _distribution(plan, _tables(language, length, den, max_bytes), language.vocab_size,
                         progress)


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
    """Exact quantities of factorized sampling at one length, in nats.

    Every quantity of a whole sequence comes with its ``_per_token`` twin (the same / L):
    ``kl`` / ``kl_per_token``: KL(q || p); ``jensen_bound`` / ``jensen_bound_per_token``:
    E_tau KL(q || p_tau) (Lemma B.2); ``jensen_gap`` / ``jensen_gap_per_token``: jensen_bound -
    kl >= 0, how loose Lemma B.2 is (0 when both are infinite); ``entropy`` /
    ``entropy_per_token``: H(q). Per token by definition: ``log_ter``: eq. 4,
    E_q[-log p(x)] / L = (H + KL) / L; ``log_ter_q``: its optimum H / L; ``log_ter_gap``:
    log TER(p) - log TER(q) = KL / L, the quantity Theorem 4.2 bounds
    (``TERBound.log_ter_gap_bound``); ``gen_log_ppl``: E_p[-log q(x)] / L (inf if p leaves
    supp q). Probabilities: ``ser``: eq. 5, p(outside supp q), summed over the sequences outside
    the support (so an exact 0 is 0.0); ``total_mass``: sum of p (1 up to rounding, reported
    within [0, 1]). ``length``: L in tokens. Every field lies in its domain: probabilities in
    [0, 1], the others >= 0. Under an adaptive policy the Jensen bound and gap (and their
    twins) are None: the bound is defined for state-independent plans only. ``gap`` is the
    deprecated name of ``jensen_gap``.
    """

    kl: float
    kl_per_token: float
    log_ter_gap: float
    log_ter: float
    log_ter_q: float
    gen_log_ppl: float
    ser: float
    jensen_bound: float | None
    jensen_bound_per_token: float | None
    jensen_gap: float | None
    jensen_gap_per_token: float | None
    entropy: float
    entropy_per_token: float
    length: int
    total_mass: float

    @property
    def gap(self) -> float | None:
        """Deprecated: ``jensen_gap`` (jensen_bound - kl), not the TER gap ``log_ter_gap``."""
        warnings.warn("ExactMetrics.gap is deprecated: use jensen_gap (jensen_bound - kl, nats "
                      "per sequence); the TER gap log TER(p) - log TER(q) is log_ter_gap",
                      DeprecationWarning, stacklevel=2)
        return self.jensen_gap

    def as_dict(self) -> dict:
        """The fields as a dict (the JSON of ``mdm-exact exact``)."""
        return asdict(self)


def exact_metrics(
    language: Language,
    schedule: Plan | Policy,
    length: int,
    denoiser: Denoiser | None = None,
    *,
    max_bytes: float | None = None,
    progress: bool = False,
) -> ExactMetrics:
    """All exact metrics of ``output_distribution`` (see ``ExactMetrics``), each in its domain.

    The Jensen bound uses the Lemma B.3 decomposition: E_tau KL(q || p_tau) = -H(q) -
    sum_{partial s} q(s) sum_{j masked} w(s, j) sum_v q(v | s, j) log p_theta(v | s, j), with w the
    plan's probability of revealing j right after exactly the revealed set of s (see
    ``_jensen_bound``). Under an adaptive policy the Jensen bound is not defined (None). Since
    KL(q || p) <= E_tau KL(q || p_tau), the reported KL is the smaller of the two computed
    values: an exact 0 of the bound (the oracle revealing one position per step) makes KL
    exactly 0 rather than rounding noise. ``progress``: tqdm bars on stderr over the phases and
    inside them (after 2 s).
    """
    if is_policy(schedule):
        return _policy_metrics(language, schedule, length, denoiser, max_bytes, progress)
    plan = check_plan(schedule)
    length = plan.check_length(length)
    den = resolve_denoiser(language, denoiser)
    v = language.vocab_size
    # One bar over the phases: the first two are single vectorised calls that no inner bar sees.
    with progress_bar(progress, total=4, desc="exact metrics", unit="phase",
                      postfix="denoiser on every partial state") as bar:
        tables = _tables(language, length, den, max_bytes)
        _next_phase(bar, "propagation")
        log_p = _log_distribution(plan, tables, v, progress)
        _next_phase(bar, "sequence metrics")
        seq = _sequence_metrics(language, log_p, length)
        _next_phase(bar, "Jensen bound")
        jensen = _jensen_bound(language, plan, tables, den, seq["entropy"], progress)
        bar.update()
    return _metrics(seq, length, jensen)


def _next_phase(bar, name: str) -> None:
    """Count a phase done on ``bar`` and name the next one (no refresh: the bar keeps its
    delay)."""
    bar.set_postfix_str(name, refresh=False)
    bar.update()


def _metrics(seq: dict, length: int, jensen: float | None) -> ExactMetrics:
    """``ExactMetrics`` from ``_sequence_metrics``' fields and the Jensen bound (None under a
    policy). KL(q || p) <= E_tau KL(q || p_tau), so the KL is the smaller of the two computed
    values (an exact 0 of the bound makes KL exactly 0, not rounding noise). Each per-token
    twin is its quantity / L, and log TER(p) - log TER(q) = KL / L (eq. 4)."""
    entropy = seq["entropy"]
    kl = seq["kl"] if jensen is None else min(seq["kl"], jensen)
    gap = None if jensen is None else (0.0 if math.isinf(kl) else jensen - kl)

    def per_token(value: float | None) -> float | None:
        return None if value is None else value / length

    return ExactMetrics(
        kl=kl,
        kl_per_token=kl / length,
        log_ter_gap=kl / length,
        log_ter=(entropy + kl) / length,
        log_ter_q=entropy / length,
        gen_log_ppl=seq["gen_log_ppl"],
        ser=seq["ser"],
        jensen_bound=jensen,
        jensen_bound_per_token=per_token(jensen),
        jensen_gap=gap,
        jensen_gap_per_token=per_token(gap),
        entropy=entropy,
        entropy_per_token=entropy / length,
        length=length,
        total_mass=seq["total_mass"],
    )


def _kl_terms(q: np.ndarray, p: np.ndarray, log_q: np.ndarray, log_p: np.ndarray) -> np.ndarray:
    """Per entry q log(q/p) - q + p >= 0 (the summands of a KL between two distributions once
    their masses match), computed so that each is >= 0 and exactly 0 where p == q: q (e^l - 1
    - l) with l = log p - log q near l = 0, (p - q) - q l elsewhere; +inf where q > 0 = p, p
    where q = 0 (so a row's terms sum to its KL)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ell = log_p - log_q
        near = q * (np.expm1(np.clip(ell, -1.0, 1.0)) - np.clip(ell, -1.0, 1.0))
        far = (p - q) - q * ell
        out = np.where(np.abs(ell) < 1.0, near, far)
    out = np.where(q > 0, np.where(log_p == -np.inf, np.inf, out), p)
    return np.maximum(out, 0.0)


def _sequence_metrics(language: Language, log_p: np.ndarray, length: int) -> dict:
    """The fields of ``ExactMetrics`` that need only p over full sequences ((V^L,) log p, -inf
    exactly where p = 0), each in its domain: probabilities in [0, 1], KL and entropies >= 0.
    SER is the mass off the support (a sum of non-negative terms, exactly 0 when p never leaves
    it), not 1 minus the mass on it."""
    v = language.vocab_size
    full = np.array(np.unravel_index(np.arange(v**length), (v,) * length)).T
    log_q = np.asarray(language.log_prob(full), dtype=np.float64)
    support = np.asarray(language.in_support(full))
    q = np.where(support, np.exp(log_q), 0.0)
    p = np.exp(log_p)
    ser = min(1.0, math.fsum(p[~support]))
    with np.errstate(invalid="ignore"):
        entropy = max(0.0, math.fsum(np.where(q > 0, -q * log_q, 0.0)))
        # KL(q || p) = sum_supp (q log(q/p) - q + p) + p(outside supp q), every term >= 0.
        kl = math.fsum(_kl_terms(q[support], p[support], log_q[support], log_p[support])) + ser
        if np.any(~support & (log_p > -np.inf)):
            gen = math.inf
        else:
            gen = math.fsum(np.where(p[support] > 0, -p[support] * log_q[support], 0.0)) / length
    return {"kl": kl, "entropy": entropy, "gen_log_ppl": max(0.0, gen), "ser": ser,
            "total_mass": min(1.0, math.fsum(p))}


def _one_at_a_time(plan: Plan, length: int) -> bool:
    """Whether no step of ``plan`` can reveal two positions (then every per-step total
    correlation, and with the oracle the Jensen bound, is exactly 0)."""
    if length == 1:
        return True
    if isinstance(plan, FixedCountPlan):
        return bool(np.all(plan.counts <= 1))
    if isinstance(plan, Schedule):
        return False
    return all(tau.size <= 1 for tau in plan.sets)


def _jensen_bound(language: Language, plan: Plan, tables: _Tables, den, entropy: float,
                  progress: bool = False) -> float:
    """E_tau KL(q || p_tau) (Lemma B.2) through the Lemma B.3 decomposition, split into two
    sums of non-negative terms: sum_s q(s) sum_j w(s, j) KL(q(. | s, j) || p_theta(. | s, j))
    (exactly 0 for the oracle) plus the plan's expected total correlation
    sum_s q(s) sum_j w(s, j) H(q(. | s, j)) - H(q) (clipped at 0, exactly 0 when no step reveals
    two positions); w(s, j) is the plan's probability of revealing j right after exactly the
    revealed set of s. Computed in chunks of states to bound memory (``progress``: a bar over
    them)."""
    states, probs = tables.states, tables.probs
    length, v = states.shape[1], language.vocab_size
    qs = np.exp(np.asarray(language.log_prob(states), dtype=np.float64))
    weights = _reveal_weights(plan, states) * qs[:, None]
    oracle = isinstance(den, Oracle)
    kl_part, cond_entropy = [], []
    step = max(1, _CHUNK_PAIRS // max(1, length * v))
    for a in progress_bar(progress, range(0, states.shape[0], step), desc="exact Jensen bound"):
        w = weights[a:a + step]
        rows = np.flatnonzero(np.any(w > 0, axis=1))
        if rows.size == 0:
            continue
        w = w[rows]
        p = probs[a + rows]
        if oracle:
            o = p  # the oracle's outputs are already q's marginals
        else:
            post = posterior(language, states[a + rows])
            o = np.where(post.valid[:, None, None], post.marginals, 0.0)
        cond_entropy.append(np.where(w > 0, w * shannon_entropy(o), 0.0).sum())
        if not oracle:
            with np.errstate(divide="ignore", invalid="ignore"):  # 0 * inf where w = 0
                kl = _kl_terms(o, p, np.log(o), np.log(p)).sum(axis=2)
                kl_part.append(np.where(w > 0, w * kl, 0.0).sum())
    tc = 0.0 if _one_at_a_time(plan, length) else max(0.0, math.fsum(cond_entropy) - entropy)
    return math.fsum(kl_part) + tc


def _bits(selected: np.ndarray) -> np.ndarray:
    """(S,) the bitmask (bit j = position j, as in ``_successors``) of each row of (S, L) bools."""
    return (selected.astype(np.int64) << np.arange(selected.shape[1])).sum(axis=1)


def _policy_distribution(policy: Policy, tables: _Tables, vocab_size: int,
                         progress: bool = False) -> np.ndarray:
    """The exact output distribution under an adaptive policy: the partial-state chain in which
    step k moves s to s + y_B only for the set B = policy.select(s, k), with weight
    prod_{j in B} p_theta(y_j | s) (a state branches over token values only). RandomTopK with
    blocks instead reveals a uniform m_k-subset of the visible positions: weight
    1 / C(visible, m_k) per subset. After ``max_steps`` every state is fully revealed.
    ``progress``: a bar over the steps."""
    states, probs = tables.states, tables.probs
    length = states.shape[1]
    src, dst, weight, count, mask = _successors(states, probs, vocab_size)
    prob = np.zeros(states.shape[0])
    prob[0] = 1.0  # state code 0: everything masked
    by_state = policy.deterministic and not isinstance(policy, TopK)
    if by_state:
        # The choice depends on the state only (TopK's also on the step, through m_k): keep the
        # pairs that reveal exactly the chosen set, once.
        keep = mask == _bits(policy.select(probs, states, 0))[src]
        src, dst, weight = src[keep], dst[keep], weight[keep]
    for k in progress_bar(progress, range(policy.max_steps(length)), desc="exact policy steps"):
        if policy.step_is_empty(k, length):
            continue
        if by_state:
            w = weight
        elif not policy.deterministic:
            seen = policy.visible(states)
            n = seen.sum(axis=1)
            m_k = int(policy.counts(length)[k])
            # C(n, min(m_k, n)) equally likely subsets of the n visible positions.
            ways = np.array([float(math.comb(c, min(m_k, c))) for c in range(length + 1)])[n]
            inside = (mask & ~_bits(seen)[src]) == 0
            w = weight * np.where(inside & (count == np.minimum(m_k, n)[src]), 1.0 / ways[src],
                                  0.0)
        else:
            w = weight * (mask == _bits(policy.select(probs, states, k))[src])
        prob = np.bincount(dst, weights=prob[src] * w, minlength=prob.size)
    full = tables.open_count == 0
    out = np.zeros(vocab_size**length)
    idx = np.ravel_multi_index(tuple(states[full].T), (vocab_size,) * length)
    out[idx] = prob[full]
    return out.reshape((vocab_size,) * length)


def _policy_output(language: Language, policy: Policy, length: int, denoiser, max_bytes,
                   progress: bool = False) -> np.ndarray:
    """p (V,)*L under ``policy``; RandomTopK without blocks runs as its ``FixedCountPlan`` (the
    same law)."""
    length = policy.check_length(length)
    den = resolve_denoiser(language, denoiser)
    tables = _tables(language, length, den, max_bytes)
    if isinstance(policy, RandomTopK) and policy.block_length is None:
        plan = policy.fixed_count_plan(length)
        return _distribution(plan, tables, language.vocab_size, progress)
    return _policy_distribution(policy, tables, language.vocab_size, progress)


def _policy_metrics(language: Language, policy: Policy, length: int, denoiser, max_bytes,
                    progress: bool = False) -> ExactMetrics:
    """``exact_metrics`` under an adaptive policy: every field but the Jensen bound and the
    Jensen gap, which are defined for state-independent plans only (None)."""
    dist = _policy_output(language, policy, length, denoiser, max_bytes, progress)
    length = dist.ndim
    with np.errstate(divide="ignore"):
        seq = _sequence_metrics(language, np.log(dist.ravel()), length)
    return _metrics(seq, length, None)
