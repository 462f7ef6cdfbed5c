"""Adaptive unmasking policies: which masked positions to reveal, chosen from the denoiser's output.

A plan (``Schedule``, ``FixedCountPlan``, ``DeterministicPlan``) fixes the positions of every step
before sampling starts; a policy chooses them at each step from the marginals p_j the denoiser
gives at the current state, as the samplers in practical use do. The tokens at the chosen
positions are then drawn independently from their marginals, exactly as under a plan (eq. 3).

Scores of a masked position j (larger is more certain):

- ``confidence``: max_v p_j(v);
- ``margin``: p_(1) - p_(2), the two largest probabilities;
- ``entropy``: sum_v p_j(v) log p_j(v) = -H(p_j) (0 log 0 = 0).

**Ranking**: every rule ranks the positions it sees by the rounded score ``np.round(s, 12)``,
largest first, equal rounded scores by position, lowest first; every comparison of a rule (with
``tau``, with ``1 - f / (n + 1)``, the entropy sums) uses the rounded scores too, so that float
noise below 1e-12 never changes a decision. The rules:

- ``TopK(score, num_steps=N)``: step k reveals the m_k best-ranked positions, m_k the even split
  of L over N steps (L // N each, one more for the first L mod N steps; LLaDA's low-confidence
  remasking, Dream's maskgit_plus / topk_margin / entropy).
- ``Threshold(tau)``: the best-ranked position by confidence, plus every other one with
  confidence >= tau (Fast-dLLM's parallel decoding).
- ``EntropyBounded(gamma)``: ranked by the entropy score, the longest prefix of the ranking whose
  entropies H satisfy sum(H) - max(H) <= gamma (EB-Sampler; at least one position).
- ``Factor(f)``: ranked by confidence; rank n (1-based) is accepted while
  c_(n) >= 1 - f / (n + 1), rank 1 always, stopping at the first failure (Fast-dLLM's factor rule).
- ``RandomTopK(num_steps=N)``: m_k positions uniformly at random (LLaDA's ``random`` remasking;
  without blocks the same law as ``FixedCountPlan.even(L, N)``).

``block_length`` (LLaDA's semi-autoregressive blocks, every rule): positions are cut into blocks
[0, B), [B, 2B), ... (the last one shorter when B does not divide L) and a rule sees only the
masked positions of the leftmost block that still has one; TopK and RandomTopK split
``num_steps`` evenly over the blocks (refused when it does not divide) and the steps of a block
split its length evenly.

Off the support of q (revealed tokens that are jointly impossible) the ``Oracle`` returns uniform
marginals, so every score ties there and the rules rank by position: TopK reveals the leftmost
m_k positions, Threshold the leftmost one (all of them when tau <= 1/V).

Every policy has ``deterministic`` (the chosen positions are a function of the state; False only
for RandomTopK), ``check_length``, ``max_steps``, ``select`` and ``to_dict`` / ``from_dict`` (the
plan-file format of docs/cli.md). A policy never imports the sampler:
``mdm_exact.sampling.sample`` and ``mdm_exact.exact.output_distribution`` / ``exact_metrics``
accept a policy wherever they accept a plan.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numba
import numpy as np

from ._utils import MASK, as_rng, check_positive_int, real_number
from .errors import ArgumentError, ArgumentTypeError
from .schedules import PLAN_FORMAT, FixedCountPlan, plan_fields

SCORES = ("confidence", "margin", "entropy")
"""The score names of ``TopK``."""

DECIMALS = 12
"""Scores are rounded to this many decimal places before ranking and comparing."""

SPECS = ("topk-confidence:N", "topk-margin:N", "topk-entropy:N", "random-topk:N", "threshold:TAU",
         "eb:GAMMA", "factor:F")
"""The forms ``parse_policy`` (and the CLI's ``--policy``) accept."""


def _check_real(name: str, value) -> float:
    v = real_number(name, value)
    if not math.isfinite(v):
        raise ArgumentError(f"{name} must be finite, got {value!r}")
    return v


def _check_block_length(value) -> int | None:
    return None if value is None else check_positive_int("block_length", value)


def _even_split(total: int, parts: int) -> np.ndarray:
    """(parts,) total // parts each, one more for the first total mod parts (LLaDA's
    ``get_num_transfer_tokens``)."""
    counts = np.full(parts, total // parts, dtype=np.int64)
    counts[: total % parts] += 1
    return counts


@numba.njit(cache=True)
def _visible_range(row, block_length):
    """[lo, hi): the positions a rule may see in ``row`` (the leftmost block holding a masked
    position, or the whole row); the masked ones among them are visible."""
    length = row.size
    if block_length == 0:
        return 0, length
    for j in range(length):
        if row[j] == MASK:
            lo = j // block_length * block_length
            return lo, min(length, lo + block_length)
    return length, length


@numba.njit(cache=True)
def _rounded_score(p, score, scale):
    """The score (0 confidence, 1 margin, 2 entropy) of one marginal ``p``, rounded as
    ``np.round(s, 12)`` does: ``rint(s * 1e12) / 1e12``, bit for bit."""
    if score == 0:
        s = p[0]
        for v in range(1, p.size):
            s = max(s, p[v])
    elif score == 1:
        first, second = -np.inf, -np.inf
        for v in range(p.size):
            if p[v] > first:
                first, second = p[v], first
            elif p[v] > second:
                second = p[v]
        s = first - (second if p.size > 1 else 0.0)
    else:
        s = 0.0
        for v in range(p.size):
            if p[v] > 0:
                s += p[v] * np.log(p[v])
    return np.rint(s * scale) / scale


@numba.njit(cache=True)
def _threshold_kernel(probs, x, block_length, tau):
    """Threshold's choice in one pass, without a sort: the accepted set is {rounded c >= tau}
    plus the best-ranked position (the first strict maximum is the lowest position among
    ties)."""
    num, length, _ = probs.shape
    scale = 10.0**DECIMALS
    out = np.zeros((num, length), dtype=np.bool_)
    for b in range(num):
        lo, hi = _visible_range(x[b], block_length)
        best, best_key, accepted = -1, -np.inf, False
        for j in range(lo, hi):
            if x[b, j] != MASK:
                continue
            key = _rounded_score(probs[b, j], 0, scale)
            if key >= tau:
                out[b, j] = True
                accepted = True
            if key > best_key:
                best, best_key = j, key
        if best >= 0 and not accepted:
            out[b, best] = True
    return out


@numba.njit(cache=True)
def _ranked_kernel(probs, x, block_length, score, rule, param, count):
    """The rules that need the ranking (descending rounded score, ties by lowest position):
    ``rule`` 0 (TopK: the ``count`` best), 1 (Factor: ``param`` = f) or 2 (EntropyBounded:
    ``param`` = gamma).

    Only the head of the ranking is sorted: the positions with a key >= a cut that no accepted
    position can fall below (TopK: the count-th largest key; Factor: c >= 1 - f/3, the lowest
    bar of ranks >= 2; EntropyBounded: H <= gamma, since every accepted position but the last
    has H <= sum of those before the last <= gamma), then the best position below the cut."""
    num, length, _ = probs.shape
    scale = 10.0**DECIMALS
    out = np.zeros((num, length), dtype=np.bool_)
    keys = np.empty(length)
    pos = np.empty(length, dtype=np.int64)
    head_keys = np.empty(length + 1)
    head_pos = np.empty(length + 1, dtype=np.int64)
    for b in range(num):
        lo, hi = _visible_range(x[b], block_length)
        n = 0
        for j in range(lo, hi):
            if x[b, j] == MASK:
                keys[n] = _rounded_score(probs[b, j], score, scale)
                pos[n] = j
                n += 1
        if n == 0:
            continue
        if rule == 0:
            if count == 0:
                continue
            cut = -np.inf if count >= n else -np.partition(-keys[:n], count - 1)[count - 1]
        elif rule == 1:
            cut = 1.0 - param / 3.0
        else:
            cut = -param
        m, below = 0, -1
        for i in range(n):  # in position order
            if keys[i] >= cut:
                head_keys[m] = keys[i]
                head_pos[m] = pos[i]
                m += 1
            elif below < 0 or keys[i] > keys[below]:
                below = i
        order = np.argsort(-head_keys[:m], kind="mergesort")  # stable: ties keep position order
        head_keys[:m], head_pos[:m] = head_keys[:m][order], head_pos[:m][order]
        if below >= 0:
            head_keys[m], head_pos[m] = keys[below], pos[below]
            m += 1
        if rule == 0:
            take = min(count, n)
        elif rule == 1:
            take = 1  # rank n (1-based) needs c_(n) >= 1 - f / (n + 1)
            while take < m and head_keys[take] >= 1.0 - param / (take + 2.0):
                take += 1
        else:
            take, total, top = 0, 0.0, 0.0  # the longest prefix with sum(H) - max(H) <= gamma
            for i in range(m):
                h = -head_keys[i]
                total += h
                top = h if i == 0 else max(top, h)
                if total - top <= param:
                    take = i + 1
        for i in range(take):
            out[b, head_pos[i]] = True
    return out


def _kernel_args(probs: np.ndarray, x: np.ndarray, block_length: int | None):
    return np.ascontiguousarray(probs), np.ascontiguousarray(x, dtype=np.int64), block_length or 0


class Policy(ABC):
    """An adaptive unmasking rule (see the module docstring). Subclasses are frozen dataclasses
    with a ``block_length`` field."""

    deterministic: ClassVar[bool] = True
    """Whether the chosen positions are a function of the state (False only for RandomTopK)."""

    rule: ClassVar[str]
    """The ``"rule"`` key of ``to_dict``."""

    parameters: ClassVar[tuple[str, ...]]
    """The rule's fields saved by ``to_dict`` besides ``block_length``."""

    block_length: int | None

    # ------------------------------------------------------------------ lengths and steps

    def check_length(self, length: int) -> int:
        """``length`` as an int; refuses ``block_length`` > L."""
        length = check_positive_int("length", length)
        if self.block_length is not None and self.block_length > length:
            raise ArgumentError(
                f"block_length must be <= length {length}, got {self.block_length}"
            )
        return length

    def max_steps(self, length: int) -> int:
        """An upper bound on the number of steps: L (every step reveals at least one position)."""
        return self.check_length(length)

    def step_is_empty(self, step: int, length: int) -> bool:
        """Whether step ``step`` reveals nothing in any row whatever the state (only TopK /
        RandomTopK with N > L or more steps than positions in a block); the sampler makes no
        denoiser call there."""
        return False

    # ------------------------------------------------------------------ selection

    def visible(self, x: np.ndarray) -> np.ndarray:
        """(B, L) bool: the masked positions the rule sees at state ``x`` (B, L): all of them,
        or those of the leftmost block that still has one."""
        masked = x == MASK
        if self.block_length is None:
            return masked
        block = np.arange(x.shape[1]) // self.block_length
        first = np.argmax(masked, axis=1)  # rows with nothing masked see nothing anyway
        return masked & (block[None, :] == block[first][:, None])

    def select(self, marginals, x, step: int, rng=None) -> np.ndarray:
        """(B, L) bool: the positions to reveal at 0-based step ``step`` of every row.

        ``marginals``: (B, L, V) the denoiser's output at the state ``x`` (B, L) (``MASK`` = -1
        where masked). Only masked positions are selected; a row with a masked position gets at
        least one (except at a TopK / RandomTopK step whose count m_k is 0, which is empty); a
        row with nothing masked gets none. Deterministic policies ignore ``rng``.
        """
        x = np.asarray(x)
        probs = np.asarray(marginals, dtype=np.float64)
        if x.ndim != 2 or probs.ndim != 3 or probs.shape[:2] != x.shape:
            raise ArgumentError(f"marginals must have shape (B, L, V) matching x {x.shape}, got "
                                f"{probs.shape}")
        step = check_positive_int("step", step, 0)
        if step >= self.max_steps(x.shape[1]):
            raise ArgumentError(f"step must be < max_steps = {self.max_steps(x.shape[1])}, "
                                f"got {step}")
        return self._select(probs, x, step, rng)

    @abstractmethod
    def _select(self, probs: np.ndarray, x: np.ndarray, step: int, rng) -> np.ndarray: ...

    # ------------------------------------------------------------------ descriptions

    @property
    @abstractmethod
    def spec(self) -> str:
        """The ``parse_policy`` form of the rule (without the block length)."""

    @property
    def name(self) -> str:
        """``spec``, with ``/block=B`` when blocks are used (for tables and figures)."""
        return self.spec if self.block_length is None else f"{self.spec}/block={self.block_length}"

    def to_dict(self) -> dict:
        """JSON-ready description (docs/cli.md, "Plan files"): format, kind ``"policy"``, the
        rule, its parameters and ``block_length``."""
        return {"format": PLAN_FORMAT, "kind": "policy", "rule": self.rule,
                **{key: getattr(self, key) for key in self.parameters},
                "block_length": self.block_length}

    @classmethod
    def from_dict(cls, data: dict) -> Policy:
        """Inverse of ``to_dict``: the policy named by ``data["rule"]`` (on a subclass, only its
        own rule is accepted); ``block_length`` may be left out. Malformed input is refused
        naming the key."""
        keys = tuple(data) if isinstance(data, dict) else ()
        rule = plan_fields(data, "policy", ("rule",), keys)["rule"]
        allowed = {name: c for name, c in RULES.items() if issubclass(c, cls)}
        if not isinstance(rule, str) or rule not in allowed:
            wanted = (repr(next(iter(allowed))) if len(allowed) == 1
                      else f"one of {', '.join(allowed)}")
            raise ArgumentError(f"plan key 'rule' must be {wanted}, got {rule!r}")
        target = allowed[rule]
        plan_fields(data, "policy", ("rule", *target.parameters), ("block_length",))
        return target(**{key: data[key] for key in target.parameters},
                      block_length=data.get("block_length"))


class _CountedPolicy(Policy):
    """Rules that reveal a planned number m_k of positions at step k (TopK, RandomTopK)."""

    num_steps: int

    def check_length(self, length: int) -> int:
        """``length`` as an int; refuses ``block_length`` > L and ``num_steps`` not divisible by
        the number of blocks ceil(L / block_length)."""
        length = super().check_length(length)
        if self.block_length is not None:
            blocks = -(-length // self.block_length)
            if self.num_steps % blocks:
                raise ArgumentError(
                    f"num_steps must be a multiple of the number of blocks ceil(L / block_length) "
                    f"= {blocks} (L = {length}, block_length = {self.block_length}), got "
                    f"{self.num_steps}"
                )
        return length

    def counts(self, length: int) -> np.ndarray:
        """(N,) m_k: the even split of L over the N steps, or of each block over its
        N / (number of blocks) steps."""
        length = self.check_length(length)
        if self.block_length is None:
            return _even_split(length, self.num_steps)
        starts = range(0, length, self.block_length)
        per_block = self.num_steps // len(starts)
        return np.concatenate([_even_split(min(self.block_length, length - s), per_block)
                               for s in starts])

    def max_steps(self, length: int) -> int:
        """N, the number of steps (empty ones included)."""
        self.check_length(length)
        return self.num_steps

    def step_is_empty(self, step: int, length: int) -> bool:
        return bool(self.counts(length)[step] == 0)


@dataclass(frozen=True)
class TopK(_CountedPolicy):
    """Reveal the m_k best-ranked masked positions at step k (LLaDA low-confidence remasking;
    Dream's maskgit_plus = ``confidence``, topk_margin = ``margin``, entropy = ``entropy``).

    m_k is the even split of L over ``num_steps`` (L // N, one more for the first L mod N steps;
    with blocks, of each block over its share of the steps). When N > L (or a block has fewer
    positions than steps) the last steps have m_k = 0: they are empty, no denoiser call is made
    there and NFE counts only the calls. Off the support the Oracle's uniform marginals tie, and
    the leftmost m_k positions are revealed.
    """

    rule: ClassVar[str] = "topk"
    parameters: ClassVar[tuple[str, ...]] = ("score", "num_steps")

    score: str = "confidence"
    num_steps: int | None = None
    block_length: int | None = None

    def __post_init__(self):
        if self.score not in SCORES:
            raise ArgumentError(f"score must be one of {', '.join(SCORES)}, got {self.score!r}")
        object.__setattr__(self, "num_steps", check_positive_int("num_steps", self.num_steps))
        object.__setattr__(self, "block_length", _check_block_length(self.block_length))

    def _select(self, probs, x, step, rng):
        count = int(self.counts(x.shape[1])[step])
        return _ranked_kernel(*_kernel_args(probs, x, self.block_length),
                              SCORES.index(self.score), 0, 0.0, count)

    @property
    def spec(self) -> str:
        return f"topk-{self.score}:{self.num_steps}"


@dataclass(frozen=True)
class RandomTopK(_CountedPolicy):
    """Reveal m_k masked positions uniformly at random at step k (LLaDA's ``random`` remasking).

    m_k as in ``TopK``. Without blocks this is ``FixedCountPlan.even(L, N)`` in law
    (``fixed_count_plan``); with blocks the positions are uniform within the leftmost block that
    still has a masked one. Not deterministic: ``select`` draws from ``rng``.
    """

    rule: ClassVar[str] = "random_topk"
    parameters: ClassVar[tuple[str, ...]] = ("num_steps",)

    num_steps: int
    block_length: int | None = None
    deterministic: ClassVar[bool] = False

    def __post_init__(self):
        object.__setattr__(self, "num_steps", check_positive_int("num_steps", self.num_steps))
        object.__setattr__(self, "block_length", _check_block_length(self.block_length))

    def fixed_count_plan(self, length: int) -> FixedCountPlan:
        """The plan with the same law, ``FixedCountPlan(counts(length))`` (no blocks only)."""
        if self.block_length is not None:
            raise ArgumentError(
                f"block_length must be None for a fixed-count plan of the same law, got "
                f"{self.block_length} (blocks make positions depend on the state)"
            )
        return FixedCountPlan(self.counts(length))

    def _select(self, probs, x, step, rng):
        # The m_k visible positions with the smallest uniform keys: a uniform m_k-subset (keys
        # tie with probability 0).
        m = int(self.counts(x.shape[1])[step])
        seen = self.visible(x)
        if m == 0:
            return np.zeros(x.shape, dtype=bool)
        key = np.where(seen, as_rng(rng).random(x.shape), np.inf)
        cut = np.partition(key, m - 1, axis=1)[:, m - 1]  # m <= L: the counts sum to L
        return seen & (key <= cut[:, None])

    @property
    def spec(self) -> str:
        return f"random-topk:{self.num_steps}"


@dataclass(frozen=True)
class Threshold(Policy):
    """Reveal the best-ranked position by confidence, plus every other masked position with
    (rounded) confidence >= ``tau`` (Fast-dLLM's threshold rule); runs until every position is
    revealed. ``tau`` in (0, 1]. Off the support the Oracle's uniform marginals (confidence 1/V)
    tie, so only the leftmost position is revealed unless tau <= 1/V.
    """

    rule: ClassVar[str] = "threshold"
    parameters: ClassVar[tuple[str, ...]] = ("tau",)

    tau: float
    block_length: int | None = None

    def __post_init__(self):
        tau = _check_real("tau", self.tau)
        if not 0 < tau <= 1:
            raise ArgumentError(f"tau must lie in (0, 1], got {self.tau!r}")
        object.__setattr__(self, "tau", tau)
        object.__setattr__(self, "block_length", _check_block_length(self.block_length))

    def _select(self, probs, x, step, rng):
        return _threshold_kernel(*_kernel_args(probs, x, self.block_length), self.tau)

    @property
    def spec(self) -> str:
        return f"threshold:{self.tau:g}"


@dataclass(frozen=True)
class EntropyBounded(Policy):
    """Rank by the entropy score and reveal the longest prefix of the ranking whose entropies
    H_(1) <= H_(2) <= ... satisfy sum(H) - max(H) <= ``gamma`` (EB-Sampler); at least one
    position. ``gamma`` >= 0. Off the support the Oracle's uniform marginals (H = log V) tie and
    the leftmost positions come first.
    """

    rule: ClassVar[str] = "entropy_bounded"
    parameters: ClassVar[tuple[str, ...]] = ("gamma",)

    gamma: float
    block_length: int | None = None

    def __post_init__(self):
        gamma = _check_real("gamma", self.gamma)
        if gamma < 0:
            raise ArgumentError(f"gamma must be >= 0, got {self.gamma!r}")
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "block_length", _check_block_length(self.block_length))

    def _select(self, probs, x, step, rng):
        return _ranked_kernel(*_kernel_args(probs, x, self.block_length), 2, 2, self.gamma, 0)

    @property
    def spec(self) -> str:
        return f"eb:{self.gamma:g}"


@dataclass(frozen=True)
class Factor(Policy):
    """Rank by confidence; rank n (1-based) is accepted while c_(n) >= 1 - f / (n + 1), rank 1
    always, stopping at the first failure (Fast-dLLM's factor rule, without its off-by-one).
    ``f`` > 0. Off the support the Oracle's uniform marginals tie and the leftmost positions come
    first.
    """

    rule: ClassVar[str] = "factor"
    parameters: ClassVar[tuple[str, ...]] = ("f",)

    f: float
    block_length: int | None = None

    def __post_init__(self):
        f = _check_real("f", self.f)
        if f <= 0:
            raise ArgumentError(f"f must be > 0, got {self.f!r}")
        object.__setattr__(self, "f", f)
        object.__setattr__(self, "block_length", _check_block_length(self.block_length))

    def _select(self, probs, x, step, rng):
        return _ranked_kernel(*_kernel_args(probs, x, self.block_length), 0, 1, self.f, 0)

    @property
    def spec(self) -> str:
        return f"factor:{self.f:g}"


RULES: dict[str, type[Policy]] = {c.rule: c for c in (TopK, RandomTopK, Threshold,
                                                      EntropyBounded, Factor)}
"""The policy classes by the ``"rule"`` key of their ``to_dict``."""


def is_policy(obj) -> bool:
    """Whether ``obj`` is an adaptive unmasking policy (not a plan)."""
    return isinstance(obj, Policy)


def check_policy(obj) -> Policy:
    """``obj`` itself, or a ``TypeError`` naming what was passed."""
    if not isinstance(obj, Policy):
        raise ArgumentTypeError(f"policy must be a TopK, RandomTopK, Threshold, EntropyBounded or "
                                f"Factor, got {type(obj).__name__}")
    return obj


def parse_policy(spec: str, block_length: int | None = None) -> Policy:
    """A policy from its CLI form: ``topk-confidence:N``, ``topk-margin:N``, ``topk-entropy:N``,
    ``random-topk:N``, ``threshold:TAU``, ``eb:GAMMA`` or ``factor:F``."""
    if not isinstance(spec, str):
        raise ArgumentTypeError(f"policy spec must be a string, got {type(spec).__name__}")
    rule, sep, arg = spec.strip().partition(":")
    known = f"policy spec must be one of {', '.join(SPECS)}, got {spec!r}"
    if not sep or not arg:
        raise ArgumentError(known)
    if rule in ("topk-confidence", "topk-margin", "topk-entropy", "random-topk"):
        try:
            num_steps = int(arg)
        except ValueError:
            raise ArgumentError(f"num_steps of policy {spec!r} must be an integer, got {arg!r}")\
                from None
        if rule == "random-topk":
            return RandomTopK(num_steps, block_length)
        return TopK(rule.removeprefix("topk-"), num_steps, block_length)
    classes = {"threshold": (Threshold, "tau"), "eb": (EntropyBounded, "gamma"),
               "factor": (Factor, "f")}
    if rule not in classes:
        raise ArgumentError(known)
    cls, name = classes[rule]
    try:
        value = float(arg)
    except ValueError:
        raise ArgumentError(f"{name} of policy {spec!r} must be a number, got {arg!r}") from None
    return cls(value, block_length)


__all__ = ["RULES", "SCORES", "SPECS", "EntropyBounded", "Factor", "Policy", "RandomTopK",
           "Threshold", "TopK", "check_policy", "is_policy", "parse_policy"]
