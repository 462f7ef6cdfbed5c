"""Formal languages q: hidden Markov models, n-grams and Example C.7's interval parity.

Every language exposes the same interface (Section 4.1 and Appendix E.1 of the paper):

- ``sample(num, length, rng)`` -> ``(num, length)`` int64 tokens drawn from q;
- ``log_prob(x)`` -> ``(batch,)`` log q(revealed tokens), ``-inf`` off the support; masked
  positions (``MASK = -1``) are marginalised;
- ``in_support(x)`` -> ``(batch,)`` bool, exact (Boolean semiring, no float underflow);
- ``joint(length)`` -> dense ``(V,) * length`` probabilities (tiny cases only, size-guarded);
- ``entropy(length)`` -> ``Estimate`` of H(q) over sequences of that length, in nats;
- ``as_hmm()`` -> the equivalent ``HMM``; ``save(path)`` to JSON or ``.npz``.

Tables are validated, never coerced: real numbers only (bool, complex, strings refused), finite,
non-negative, rows summing to 1. Positive entries may be arbitrarily small, subnormal included:
rows whose scaled forward-backward would leave the float range are recomputed in log space
(``mdm_exact.posterior.TINY``), so ``log_prob`` is finite exactly where ``in_support`` is True.
Each language hands that engine its tables as ``chain_arrays`` (``mdm_exact.posterior``'s
``HMMArrays``, ``NGramArrays`` or ``IntervalParityArrays``): languages import the engine, never
the other way round.

Random generators follow Algorithms 1 and 2 of Appendix E.1 (reconstructed; see Ambiguity 15 in
docs/differences.md for the temperature parameterisation) and ``preset`` gives the Table 1
languages.
"""

from __future__ import annotations

import itertools
import json
import math
import zipfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ._utils import (
    as_rng,
    categorical,
    check_memory,
    check_positive_int,
    check_probabilities,
    real_array,
    shannon_entropy,
    table_bytes,
)
from .errors import ArgumentError, ArgumentTypeError, MissingFileError
from .estimate import Estimate, check_confidence, exact, mean_interval
from .posterior import (
    ChainArrays,
    HMMArrays,
    IntervalParityArrays,
    NGramArrays,
    in_support,
    log_prob,
)

ENUMERATION_MAX_BYTES = 2**28
"""Size up to which ``HMM.entropy`` enumerates the joint instead of sampling."""


class Language(ABC):
    """Common interface of every language q over tokens ``0 .. vocab_size - 1``."""

    kind: str

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of tokens V."""

    @abstractmethod
    def sample(self, num: int, length: int, rng=None) -> np.ndarray:
        """``(num, length)`` int64 sequences drawn from q with ``rng`` (seed or Generator)."""

    @abstractmethod
    def joint(self, length: int, *, max_bytes: float | None = None) -> np.ndarray:
        """Dense joint ``(V,) * length`` of q; refuses when it would exceed ``max_bytes``."""

    @abstractmethod
    def entropy(self, length: int, **kwargs) -> Estimate:
        """H(q) over sequences of ``length`` tokens, in nats."""

    @abstractmethod
    def as_hmm(self) -> HMM:
        """The equivalent hidden Markov model."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (schema of ``load_language``)."""

    @cached_property
    def chain_arrays(self) -> ChainArrays:
        """The arrays the posterior engine runs on, built once: the ``HMMArrays`` of
        ``as_hmm()`` unless the language has a leaner chain."""
        return self.as_hmm().chain_arrays

    def log_prob(self, x) -> np.ndarray:
        """``(batch,)`` log q of the revealed tokens of each row of ``x`` (batch, length)."""
        return log_prob(self, x)

    def in_support(self, x) -> np.ndarray:
        """``(batch,)`` whether the revealed tokens of each row have q-probability > 0."""
        return in_support(self, x)

    def save(self, path: str | Path) -> None:
        """Write the language to ``path``: ``.json`` (readable) or ``.npz`` (compact)."""
        save_language(self, path)

    def _check_length(self, length) -> int:
        return check_positive_int("length", length)


def check_language(language) -> Language:
    """``language`` itself, or a one-line ``ArgumentTypeError`` naming what was passed."""
    if not isinstance(language, Language):
        raise ArgumentTypeError(
            f"language must be an mdm_exact Language, got {type(language).__name__}")
    return language


def _common_metadata(metadata) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ArgumentTypeError(
            f"metadata must be a JSON object (dict), got {type(metadata).__name__}")
    meta = dict(metadata)
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as err:
        raise ArgumentTypeError(f"metadata must be JSON serialisable: {err}") from None
    return meta


def _sample_bytes(num: int, length: int, row_floats: int) -> float:
    """Peak of drawing ``num`` sequences of ``length`` tokens: the int64 output plus the float
    work of one step (``row_floats`` per sequence, counted three times for the cumulative sum
    and the draw of ``categorical``)."""
    return 8.0 * num * length + 24.0 * num * row_floats


def _check_sample_size(kind: str, num: int, length: int, row_floats: int) -> None:
    check_memory(f"{kind}.sample(num={num}, length={length})",
                 _sample_bytes(num, length, row_floats), argument="num or length")


@dataclass(frozen=True, eq=False)
class HMM(Language):
    """Hidden Markov model (Section 4.1).

    ``initial``: (K,) distribution of the first hidden state; ``transition``: (K, K), row s is
    P(s_{j+1} | s_j = s); ``emission``: (K, V), row s is P(o_j | s_j = s).
    """

    initial: np.ndarray
    transition: np.ndarray
    emission: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    kind = "hmm"

    def __post_init__(self):
        # HMMArrays validates the tables; the HMM keeps its read-only copies (no second copy)
        # and hands the same object to the engine as ``chain_arrays``.
        arrays = HMMArrays(self.initial, self.transition, self.emission)
        for name in ("initial", "transition", "emission"):
            object.__setattr__(self, name, getattr(arrays, name))
        object.__setattr__(self, "chain_arrays", arrays)
        object.__setattr__(self, "metadata", _common_metadata(self.metadata))

    @property
    def vocab_size(self) -> int:
        return self.emission.shape[1]

    @property
    def num_states(self) -> int:
        """Number of hidden states K."""
        return self.emission.shape[0]

    def sample(self, num: int, length: int, rng=None) -> np.ndarray:
        num = check_positive_int("num", num, 0)
        length = self._check_length(length)
        _check_sample_size("HMM", num, length, self.num_states + self.vocab_size)
        gen = as_rng(rng)
        out = np.empty((num, length), dtype=np.int64)
        state = categorical(gen, np.broadcast_to(self.initial, (num, self.num_states)))
        for j in range(length):
            out[:, j] = categorical(gen, self.emission[state])
            if j + 1 < length:
                state = categorical(gen, self.transition[state])
        return out

    def joint(self, length: int, *, max_bytes: float | None = None) -> np.ndarray:
        length = self._check_length(length)
        v, k = self.vocab_size, self.num_states
        check_memory(f"HMM.joint(length={length})", table_bytes(v, length, 8.0 * k), max_bytes)
        # table[(x_1..x_j), s_j] = P(x_1..x_j, s_j), extended one token at a time.
        table = (self.initial[None, :] * self.emission.T).reshape(v, k)
        for _ in range(length - 1):
            moved = table @ self.transition
            table = (moved[:, None, :] * self.emission.T[None, :, :]).reshape(-1, k)
        return table.sum(axis=1).reshape((v,) * length)

    def entropy(
        self, length: int, *, num_samples: int = 20000, seed=None, confidence: float = 0.95
    ) -> Estimate:
        """H(q) in nats: exact by enumeration when V^length * K floats fit in 256 MiB, else a
        Monte-Carlo mean of -log q(x) over ``num_samples`` draws with a t interval (clipped to
        H >= 0); the draws are size-checked against the memory budget first."""
        length = self._check_length(length)
        num_samples = check_positive_int("num_samples", num_samples, 2)
        confidence = check_confidence(confidence)
        if table_bytes(self.vocab_size, length, 8.0 * self.num_states) <= ENUMERATION_MAX_BYTES:
            return exact(shannon_entropy(self.joint(length), axis=None))
        check_memory(
            f"HMM.entropy(length={length}) by Monte Carlo over num_samples={num_samples} draws",
            _sample_bytes(num_samples, length, self.num_states + self.vocab_size)
            + 8.0 * num_samples, argument="num_samples")
        x = self.sample(num_samples, length, seed)
        return mean_interval(-self.log_prob(x), confidence, domain=(0.0, math.inf))

    def as_hmm(self) -> HMM:
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "hmm",
            "initial": self.initial.tolist(),
            "transition": self.transition.tolist(),
            "emission": self.emission.tolist(),
            "metadata": self.metadata,
        }

    def __repr__(self) -> str:
        return f"HMM(num_states={self.num_states}, vocab_size={self.vocab_size})"


@dataclass(frozen=True, eq=False)
class NGram(Language):
    """n-gram language q(x) = q(x_{1:n-1}) prod_{j>=n} q(x_j | x_{j-n+1:j-1}) (Section 4.1).

    ``initial``: (V,)*(n-1), the joint of the first n-1 tokens; ``transition``: (V,)*n, the last
    axis is the next token. Sequences shorter than n-1 follow the marginal of ``initial``.
    """

    order: int
    initial: np.ndarray
    transition: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    kind = "ngram"

    def __post_init__(self):
        order = check_positive_int("order", self.order, 2)
        transition = check_probabilities("transition", self.transition)
        if transition.ndim != order or len(set(transition.shape)) != 1:
            raise ArgumentError(
                f"transition must have shape (V,)*order = (V,)*{order}, got {transition.shape}"
            )
        v = transition.shape[0]
        object.__setattr__(self, "order", order)
        object.__setattr__(
            self, "transition", check_probabilities("transition", transition, (v,) * order)
        )
        initial = real_array("initial", self.initial)
        if initial.shape != (v,) * (order - 1):
            raise ArgumentError(
                f"initial must have shape (V,)*(order-1) = {(v,) * (order - 1)}, "
                f"got {initial.shape}"
            )
        flat = check_probabilities("initial", initial.ravel())
        object.__setattr__(self, "initial", flat.reshape(initial.shape))
        object.__setattr__(self, "metadata", _common_metadata(self.metadata))

    @property
    def vocab_size(self) -> int:
        return self.transition.shape[0]

    @property
    def num_contexts(self) -> int:
        """V^(n-1), the number of hidden states of the HMM view."""
        return self.vocab_size ** (self.order - 1)

    @cached_property
    def chain_arrays(self) -> NGramArrays:
        """The tables for the posterior engine, which runs the n-gram's own sparse chain."""
        return NGramArrays(self.initial, self.transition)

    def _flat_transition(self) -> np.ndarray:
        return self.transition.reshape(self.num_contexts, self.vocab_size)

    def sample(self, num: int, length: int, rng=None) -> np.ndarray:
        num = check_positive_int("num", num, 0)
        length = self._check_length(length)
        _check_sample_size("NGram", num, max(length, self.order - 1),
                           max(self.vocab_size, self.num_contexts))
        gen = as_rng(rng)
        v, c = self.vocab_size, self.order - 1
        start = categorical(gen, np.broadcast_to(self.initial.ravel(), (num, v**c)))
        first = np.stack(np.unravel_index(start, (v,) * c), axis=1)
        out = np.empty((num, max(length, c)), dtype=np.int64)
        out[:, :c] = first
        flat = self._flat_transition()
        context = start
        for j in range(c, length):
            out[:, j] = categorical(gen, flat[context])
            context = (context * v + out[:, j]) % v**c
        return out[:, :length]

    def joint(self, length: int, *, max_bytes: float | None = None) -> np.ndarray:
        length = self._check_length(length)
        v, c = self.vocab_size, self.order - 1
        check_memory(f"NGram.joint(length={length})", table_bytes(v, max(length, c)), max_bytes)
        table = self.initial.ravel()
        flat = self._flat_transition()
        for _ in range(length - c):
            # The last n-1 tokens of the prefix are the context (row-major flattening).
            table = table.reshape(-1, v**c)[:, :, None] * flat[None, :, :]
        table = table.reshape((v,) * max(length, c))
        if length < c:
            table = table.sum(axis=tuple(range(length, c)))
        return table

    def context_marginals(self, length: int) -> np.ndarray:
        """``(max(length - n + 1, 0), V^(n-1))``: row j is the law of the context
        (x_{j+1}, ..., x_{j+n-1}) (0-based j), i.e. the state before token j + n."""
        v, c = self.vocab_size, self.order - 1
        steps = max(length - c, 0)
        out = np.empty((steps, v**c))
        mu = self.initial.ravel()
        flat = self._flat_transition()
        for j in range(steps):
            out[j] = mu
            mu = (mu[:, None] * flat).reshape(v, v**c).sum(axis=0)
        return out

    def entropy(
        self, length: int, *, num_samples: int = 20000, seed=None, confidence: float = 0.95
    ) -> Estimate:
        """Exact H(q) in nats by the chain rule, O(length * V^n). The keywords are those of
        ``HMM.entropy`` (checked, then ignored: the value is exact)."""
        length = self._check_length(length)
        _check_entropy_keywords(num_samples, confidence)
        c = self.order - 1
        init = self.initial
        if length < c:
            init = init.sum(axis=tuple(range(length, c)))
        total = shannon_entropy(init, axis=None)
        row_entropy = shannon_entropy(self._flat_transition())
        total += float(self.context_marginals(length).sum(axis=0) @ row_entropy)
        return exact(total)

    def as_hmm(self) -> HMM:
        """Dense HMM with state (x_j, ..., x_{j+n-2}) at position j, emitting its first token."""
        v, c = self.vocab_size, self.order - 1
        k = v**c
        transition = np.zeros((k, k))
        states = np.arange(k)
        for nxt in range(v):
            transition[states, (states * v + nxt) % k] += self._flat_transition()[:, nxt]
        emission = np.zeros((k, v))
        emission[states, states // v ** (c - 1)] = 1.0
        return HMM(self.initial.ravel(), transition, emission, dict(self.metadata))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "ngram",
            "order": self.order,
            "initial": self.initial.tolist(),
            "transition": self.transition.tolist(),
            "metadata": self.metadata,
        }

    def __repr__(self) -> str:
        return f"NGram(order={self.order}, vocab_size={self.vocab_size})"


def _check_entropy_keywords(num_samples, confidence) -> None:
    """The Monte-Carlo keywords of ``HMM.entropy``, validated where an exact entropy ignores
    them (so a call that works for one language works for every language)."""
    check_positive_int("num_samples", num_samples, 2)
    check_confidence(confidence)


@dataclass(frozen=True, eq=False)
class IntervalParity(Language):
    """Example C.7: intervals of ``interval`` = l tokens in {0 .. 2^(l-1) - 1} sharing pair bits.

    Within an interval, the tokens at in-interval positions a < b (1-based) share one uniform bit:
    bit index b-1 of token a equals bit index a of token b (bit r is worth 2^(r-1); Ambiguity 16).
    Intervals are independent and q is uniform over the 2^(l(l-1)/2) valid strings of each.
    Lengths must be multiples of l.
    """

    interval: int
    metadata: dict[str, Any] = field(default_factory=dict)
    kind = "interval_parity"

    def __post_init__(self):
        check_positive_int("interval", self.interval, 2)
        if self.interval > 16:
            raise ArgumentError(f"interval must be <= 16 (tokens are 2^(l-1)), got {self.interval}")
        object.__setattr__(self, "metadata", _common_metadata(self.metadata))

    @property
    def vocab_size(self) -> int:
        return 2 ** (self.interval - 1)

    @property
    def num_pairs(self) -> int:
        """Pair bits per interval, l(l-1)/2."""
        return self.interval * (self.interval - 1) // 2

    def _check_length(self, length) -> int:
        length = check_positive_int("length", length)
        if length % self.interval:
            raise ArgumentError(
                f"length must be a multiple of interval={self.interval}, got {length}"
            )
        return length

    @cached_property
    def chain_arrays(self) -> IntervalParityArrays:
        """What the posterior engine needs for its closed form: the interval alone."""
        return IntervalParityArrays(self.interval)

    def bit_index(self, a: int, b: int) -> int:
        """1-based bit index at which position ``a`` stores its pair bit with partner ``b``."""
        return b if b < a else b - 1

    def tokens_from_pair_bits(self, bits: np.ndarray) -> np.ndarray:
        """``bits`` (..., l(l-1)/2) in the order of ``itertools.combinations(range(1, l+1), 2)``
        -> tokens (..., l)."""
        ell = self.interval
        tokens = np.zeros((*bits.shape[:-1], ell), dtype=np.int64)
        for col, (a, b) in enumerate(itertools.combinations(range(1, ell + 1), 2)):
            bit = bits[..., col].astype(np.int64)
            tokens[..., a - 1] |= bit << (self.bit_index(a, b) - 1)
            tokens[..., b - 1] |= bit << (self.bit_index(b, a) - 1)
        return tokens

    def valid_strings(self) -> np.ndarray:
        """``(2^(l(l-1)/2), l)`` every valid interval string."""
        m = self.num_pairs
        codes = np.arange(2**m)
        bits = (codes[:, None] >> np.arange(m)[None, :]) & 1
        return self.tokens_from_pair_bits(bits)

    def sample(self, num: int, length: int, rng=None) -> np.ndarray:
        num = check_positive_int("num", num, 0)
        length = self._check_length(length)
        # The int64 pair bits (num, length / l, l(l-1)/2) and the token work (num, length).
        check_memory(f"IntervalParity.sample(num={num}, length={length})",
                     4.0 * num * length * (self.interval - 1) + 24.0 * num * length,
                     argument="num or length")
        gen = as_rng(rng)
        bits = gen.integers(0, 2, size=(num, length // self.interval, self.num_pairs))
        return self.tokens_from_pair_bits(bits).reshape(num, length)

    def joint(self, length: int, *, max_bytes: float | None = None) -> np.ndarray:
        length = self._check_length(length)
        v = self.vocab_size
        check_memory(f"IntervalParity.joint(length={length})", table_bytes(v, length), max_bytes)
        block = np.zeros((v,) * self.interval)
        block[tuple(self.valid_strings().T)] = 2.0**-self.num_pairs
        out = np.ones(())
        for _ in range(length // self.interval):
            out = np.multiply.outer(out, block)
        return out

    def entropy(
        self, length: int, *, num_samples: int = 20000, seed=None, confidence: float = 0.95
    ) -> Estimate:
        """Exact: (length / l) * l(l-1)/2 * log 2 nats. The keywords are those of
        ``HMM.entropy`` (checked, then ignored: the value is exact)."""
        length = self._check_length(length)
        _check_entropy_keywords(num_samples, confidence)
        return exact(length // self.interval * self.num_pairs * math.log(2))

    def as_hmm(self) -> HMM:
        """Note C.8: states (i, M) with rows 1..i of the pair-bit matrix M filled."""
        l = self.interval
        if l > 5:
            raise ArgumentError(f"as_hmm is built for interval <= 5 (2704 states), got {l}")
        pairs = list(itertools.combinations(range(1, l + 1), 2))
        states: list[tuple[int, tuple[int, ...]]] = []
        index: dict[tuple[int, tuple[int, ...]], int] = {}
        for i in range(1, l + 1):
            filled = [col for col, (a, _) in enumerate(pairs) if a <= i]
            for values in itertools.product((0, 1), repeat=len(filled)):
                bits = [0] * len(pairs)
                for col, val in zip(filled, values, strict=True):
                    bits[col] = val
                index[(i, tuple(bits))] = len(states)
                states.append((i, tuple(bits)))
        k, v = len(states), self.vocab_size
        initial, transition, emission = np.zeros(k), np.zeros((k, k)), np.zeros((k, v))

        def successors(i: int, bits: tuple[int, ...]):
            row = i + 1 if i < l else 1
            keep = bits if i < l else (0,) * len(pairs)
            cols = [col for col, (a, _) in enumerate(pairs) if a == row]
            for values in itertools.product((0, 1), repeat=len(cols)):
                new = list(keep)
                for col, val in zip(cols, values, strict=True):
                    new[col] = val
                yield index[(row, tuple(new))], 2.0 ** -len(cols)

        for s, (i, bits) in enumerate(states):
            token = self.tokens_from_pair_bits(np.array(bits))[i - 1]
            emission[s, token] = 1.0
            for t, prob in successors(i, bits):
                transition[s, t] += prob
        for t, prob in successors(l, (0,) * len(pairs)):
            initial[t] += prob
        return HMM(initial, transition, emission, {"note": f"Note C.8 HMM of interval {l}"})

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "interval_parity", "interval": self.interval, "metadata": self.metadata}

    def __repr__(self) -> str:
        return f"IntervalParity(interval={self.interval})"


# --------------------------------------------------------------------------- random generators

PARAMETERIZATIONS = ("scaled_logits", "divided_logits", "power", "dirichlet")
"""Temperature parameterisations of Algorithms 1 and 2 (Ambiguity 15): softmax(temp * z),
softmax(z / temp), u^temp normalised (u ~ U(0,1)), Dirichlet(1/temp)."""


def _random_rows(rng, shape, temperature: float, parameterization: str) -> np.ndarray:
    if parameterization == "scaled_logits":
        z = temperature * rng.standard_normal(shape)
    elif parameterization == "divided_logits":
        z = rng.standard_normal(shape) / temperature
    elif parameterization == "power":
        w = rng.random(shape) ** temperature
        return w / w.sum(axis=-1, keepdims=True)
    elif parameterization == "dirichlet":
        flat = rng.dirichlet(np.full(shape[-1], 1.0 / temperature), size=int(np.prod(shape[:-1])))
        return flat.reshape(shape)
    else:
        raise ArgumentError(
            f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}"
        )
    z -= z.max(axis=-1, keepdims=True)
    w = np.exp(z)
    return w / w.sum(axis=-1, keepdims=True)


def _prune(rows: np.ndarray, threshold: float) -> tuple[np.ndarray, float]:
    """Zero entries below ``threshold`` and renormalise; returns rows and the pruned fraction."""
    pruned = rows < threshold
    out = np.where(pruned, 0.0, rows)
    out /= out.sum(axis=-1, keepdims=True)
    return out, float(pruned.mean())


def _check_generator_args(
    temperature_name: str, temperature, threshold, row_width: int, width_name: str
) -> None:
    """A row's largest entry is >= 1/row_width, so a threshold below that never empties a row."""
    if not (np.isfinite(temperature) and temperature > 0):
        raise ArgumentError(
            f"{temperature_name} must be a positive finite number, got {temperature!r}"
        )
    if not (0 <= threshold < 1 / row_width):
        raise ArgumentError(
            f"threshold must lie in [0, 1/{width_name}) = [0, {1 / row_width:g}), "
            f"got {threshold!r}"
        )


def random_ngram(
    order: int,
    vocab_size: int,
    *,
    temperature: float = 2.0,
    threshold: float = 0.008,
    parameterization: str = "scaled_logits",
    seed=None,
) -> NGram:
    """Algorithm 1 (GenerateNGram): random rows, entries below ``threshold`` pruned.

    The fraction of pruned transition entries is stored in ``metadata["pruned_fraction"]``.
    The initial distribution over the first n-1 tokens is not pruned (the paper leaves it open).
    """
    order = check_positive_int("order", order, 2)
    vocab_size = check_positive_int("vocab_size", vocab_size, 1)
    _check_generator_args("temperature", temperature, threshold, vocab_size, "vocab_size")
    rng = as_rng(seed)
    shape = (vocab_size ** (order - 1), vocab_size)
    rows, pruned = _prune(_random_rows(rng, shape, temperature, parameterization), threshold)
    initial = _random_rows(rng, (vocab_size ** (order - 1),), temperature, parameterization)
    meta = {
        "generator": "Algorithm 1",
        "temperature": temperature,
        "threshold": threshold,
        "parameterization": parameterization,
        "pruned_fraction": pruned,
    }
    return NGram(
        order,
        initial.reshape((vocab_size,) * (order - 1)),
        rows.reshape((vocab_size,) * order),
        meta,
    )


def random_hmm(
    num_states: int,
    vocab_size: int,
    *,
    randomness: float = 3.2,
    threshold: float = 0.003,
    parameterization: str = "scaled_logits",
    seed=None,
) -> HMM:
    """Algorithm 2 (GenerateHMM): random transition and emission rows, small entries pruned.

    ``metadata`` records ``pruned_fraction_transition`` and ``pruned_fraction_emission``.
    """
    num_states = check_positive_int("num_states", num_states, 1)
    vocab_size = check_positive_int("vocab_size", vocab_size, 1)
    # Transition rows have num_states entries and emission rows vocab_size: bound by the wider.
    _check_generator_args("randomness", randomness, threshold, max(num_states, vocab_size),
                          "max(num_states, vocab_size)")
    rng = as_rng(seed)
    a, pa = _prune(_random_rows(rng, (num_states, num_states), randomness, parameterization),
                   threshold)
    b, pb = _prune(_random_rows(rng, (num_states, vocab_size), randomness, parameterization),
                   threshold)
    initial = _random_rows(rng, (num_states,), randomness, parameterization)
    meta = {
        "generator": "Algorithm 2",
        "randomness": randomness,
        "threshold": threshold,
        "parameterization": parameterization,
        "pruned_fraction_transition": pa,
        "pruned_fraction_emission": pb,
    }
    return HMM(initial, a, b, meta)


PRESETS: dict[str, dict[str, Any]] = {
    "2-gram": {"order": 2, "vocab_size": 8, "temperature": 2.0, "threshold": 0.008},
    "3-gram": {"order": 3, "vocab_size": 8, "temperature": 2.0, "threshold": 0.008},
    "4-gram": {"order": 4, "vocab_size": 8, "temperature": 2.0, "threshold": 0.005},
    "hmm": {"num_states": 32, "vocab_size": 8, "randomness": 3.2, "threshold": 0.003},
}
"""The paper's Table 1 settings."""


def preset(name: str, *, threshold: float | None = None, seed=0) -> Language:
    """A Table 1 language; ``threshold=0`` gives the unpruned variant used for TER."""
    if name not in PRESETS:
        raise ArgumentError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    kwargs = dict(PRESETS[name])
    if threshold is not None:
        kwargs["threshold"] = threshold
    if "order" in kwargs:
        lang = random_ngram(seed=seed, **kwargs)
    else:
        lang = random_hmm(seed=seed, **kwargs)
    lang.metadata.update({"preset": name, "seed": seed if isinstance(seed, int) else None})
    return lang


# ------------------------------------------------------------------------------------ files


def _json_numbers(name: str, value) -> np.ndarray:
    """A nested JSON list of numbers as a float64 array; bools (which numpy would read as 0 and
    1) and every other non-number leaf are refused, naming ``name``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, bool) or not isinstance(item, int | float | np.number):
            raise ArgumentTypeError(
                f"{name} must be a nested list of numbers, got an entry {item!r}")
    return real_array(name, value)


def _integer_field(name: str, value) -> int:
    """An integer field (``order``, ``interval``) of a file: a JSON integer or an integer 0-d
    array, never a float, string or bool rounded or parsed into one."""
    if isinstance(value, np.ndarray):
        if value.ndim != 0 or value.dtype == bool or not np.issubdtype(value.dtype, np.integer):
            raise ArgumentTypeError(f"{name} must be an integer, got {value!r}")
        value = value.item()
    return check_positive_int(name, value, 2)


def language_from_dict(data: dict[str, Any]) -> Language:
    """Inverse of ``Language.to_dict`` (the JSON schema); nothing is coerced: ``order`` and
    ``interval`` must be integers, tables nested lists (or arrays) of real numbers, ``metadata``
    an object."""
    if not isinstance(data, dict) or "kind" not in data:
        raise ArgumentError("a language description must be a mapping with a 'kind' key")
    kind = data["kind"]
    required = {
        "ngram": ("order", "initial", "transition"),
        "hmm": ("initial", "transition", "emission"),
        "interval_parity": ("interval",),
    }
    if not isinstance(kind, str) or kind not in required:
        raise ArgumentError(f"kind must be one of {sorted(required)}, got {kind!r}")
    missing = [key for key in required[kind] if key not in data]
    if missing:
        raise ArgumentError(f"a {kind!r} language needs the key(s) {missing}")
    meta = data.get("metadata")

    def table(key):
        value = data[key]
        return value if isinstance(value, np.ndarray) else _json_numbers(key, value)

    if kind == "ngram":
        return NGram(_integer_field("order", data["order"]), table("initial"),
                     table("transition"), meta)
    if kind == "hmm":
        return HMM(table("initial"), table("transition"), table("emission"), meta)
    return IntervalParity(_integer_field("interval", data["interval"]), meta)


def save_language(language: Language, path: str | Path) -> None:
    """Write ``language`` as JSON (``.json``) or NumPy arrays (``.npz``); never pickle."""
    path = Path(path)
    data = language.to_dict()
    if path.suffix == ".json":
        path.write_text(json.dumps(data))
    elif path.suffix == ".npz":
        arrays = {k: np.asarray(v) for k, v in data.items() if k not in ("kind", "metadata")}
        np.savez_compressed(path, kind=np.array(data["kind"]),
                            metadata=np.array(json.dumps(data["metadata"])), **arrays)
    else:
        raise ArgumentError(f"path must end in .json or .npz, got {str(path)!r}")


def _npz_bytes(path: Path) -> float:
    """Bytes the arrays of the ``.npz`` at ``path`` take once decompressed, read from the
    ``.npy`` headers without decompressing anything."""
    total = 0.0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            total += float(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    return total


def load_language(path: str | Path) -> Language:
    """Read a language written by ``save_language`` (JSON or ``.npz``, no pickle).

    A ``.npz`` is size-checked from its array headers against the memory budget before
    anything is decompressed; files that are empty, truncated, not of the format, nested deeper
    than the parser allows or that describe an invalid language are refused naming the path."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"no language file at {str(path)!r}")
    if path.is_dir():
        raise ArgumentError(f"path must be a language file, got the directory {str(path)!r}")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ArgumentError(f"{str(path)!r} is not valid JSON: {err}") from None
        except RecursionError:
            raise ArgumentError(f"{str(path)!r} is nested too deeply to be a language") from None
    elif path.suffix == ".npz":
        try:
            check_memory(f"loading {str(path)!r}", _npz_bytes(path), argument="the file")
            with np.load(path, allow_pickle=False) as npz:
                data = {k: npz[k] for k in npz.files}
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
            if isinstance(err, ArgumentError):
                raise
            raise ArgumentError(f"{str(path)!r} is not a readable .npz language file: "
                                f"{type(err).__name__}: {err}") from None
        if "kind" in data:
            data["kind"] = str(data["kind"])
        try:
            data["metadata"] = json.loads(str(data["metadata"])) if "metadata" in data else {}
        except (json.JSONDecodeError, RecursionError):
            raise ArgumentError(f"{str(path)!r} has metadata that is not valid JSON") from None
    else:
        raise ArgumentError(f"path must end in .json or .npz, got {str(path)!r}")
    return language_from_dict(data)
