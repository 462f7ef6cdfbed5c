"""Bad or extreme input, one row per input: a one-line refusal naming the argument, or a correct
answer (finite, in its domain). Never a crash, a NaN or a silently wrong number.

Each row is ``(id, call, exception type, text the message must contain)``; ``call`` is a
zero-argument callable. Rows are grouped by the layer they exercise; the CLI rows run the real
command line and assert exit status 2 with one line on stderr and nothing on stdout.
"""

from __future__ import annotations

import numpy as np
import pytest

import mdm_exact as me
from mdm_exact.errors import MdmExactError

# ----------------------------------------------------------------------------- library rows
# (languages, posterior, sampling, exact, estimates)


def _bigram():
    return me.NGram(2, [0.5, 0.5], [[0.9, 0.1], [0.4, 0.6]])


def _file(name: str, text: str | None = None, data: bytes | None = None) -> str:
    """A fresh file ``name`` holding ``text`` or ``data`` (a directory when both are None)."""
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / name
    if text is not None:
        path.write_text(text)
    elif data is not None:
        path.write_bytes(data)
    else:
        path.mkdir()
    return str(path)


def _json(**fields) -> str:
    import json

    return _file("lang.json", json.dumps(fields))


def _huge_npz() -> str:
    """An .npz whose header announces a (10^6, 10^6) float64 table (8 TB): only the header is
    written, so refusing it must not need the data."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    path = _file("big.npz", data=b"")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("transition.npy", header.getvalue())
        archive.writestr("kind.npy", _npy(np.array("ngram")))
    return path


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _empty_npz() -> str:
    import zipfile

    path = _file("empty.npz", data=b"")
    with zipfile.ZipFile(path, "w"):
        pass
    return path


def _call(out) -> np.ndarray:
    """``call_denoiser`` on a (1, 2) all-masked row with a denoiser returning ``out``."""
    from mdm_exact.sampling import call_denoiser

    return call_denoiser(lambda x: np.asarray(out), np.full((1, 2), me.MASK), 2)


def _mutating(x):
    x[:] = 0
    return np.full((*x.shape, 2), 0.5)


LIBRARY_ROWS: list[tuple] = [
    # item 1: tokens
    ("posterior length 0 (3, 0)",
     lambda: me.posterior_marginals(me.preset("2-gram"), np.zeros((3, 0), dtype=np.int64)),
     me.ArgumentError, "x must have length >= 1"),
    ("posterior []", lambda: me.posterior(me.preset("2-gram"), []), me.ArgumentError, "x"),
    ("posterior [[]]", lambda: me.posterior(me.preset("2-gram"), [[]]), me.ArgumentError,
     "length >= 1"),
    ("posterior 3-gram (1, 0)",
     lambda: me.posterior(me.preset("3-gram"), np.zeros((1, 0), dtype=np.int64)),
     me.ArgumentError, "length >= 1"),
    ("log_prob length 0", lambda: me.log_prob(me.preset("hmm"), [[]]), me.ArgumentError,
     "length >= 1"),
    ("in_support length 0", lambda: me.in_support(me.IntervalParity(3), np.zeros((2, 0), int)),
     me.ArgumentError, "length >= 1"),
    ("posterior ndim 3", lambda: me.posterior(_bigram(), np.zeros((1, 2, 2), dtype=int)),
     me.ArgumentError, "x must have shape"),
    ("posterior scalar", lambda: me.posterior(_bigram(), 0), me.ArgumentError, "x must have"),
    ("uint64 max is not MASK",
     lambda: me.log_prob(_bigram(), np.array([[0, 2**64 - 1]], dtype=np.uint64)),
     me.ArgumentError, "18446744073709551615"),
    ("tokens bool", lambda: me.in_support(_bigram(), np.array([[True, False]])),
     me.ArgumentTypeError, "x must hold integer tokens"),
    ("tokens complex", lambda: me.log_prob(_bigram(), np.array([[0j, 1]])),
     me.ArgumentTypeError, "complex"),
    ("tokens object", lambda: me.posterior(_bigram(), np.array([[0, 1]], dtype=object)),
     me.ArgumentTypeError, "object"),
    ("tokens 0.5", lambda: me.log_prob(_bigram(), [[0.5, 1.0]]), me.ArgumentTypeError,
     "non-integral"),
    ("tokens nan", lambda: me.log_prob(_bigram(), [[np.nan, 1.0]]), me.ArgumentTypeError,
     "non-integral"),
    ("tokens ragged", lambda: me.log_prob(_bigram(), [[0, 1], [0]]), me.ArgumentError,
     "ragged"),
    ("token too large", lambda: me.log_prob(_bigram(), [[0, 2]]), me.ArgumentError,
     "allowed [-1, 2)"),
    # item 2/13: language tables are real numbers, never coerced
    ("ngram bool table", lambda: me.NGram(2, [True, False], [[True, False], [False, True]]),
     me.ArgumentTypeError, "must hold real numbers"),
    ("ngram complex table", lambda: me.NGram(2, [1, 0], np.eye(2) + 0j), me.ArgumentTypeError,
     "transition"),
    ("hmm complex emission", lambda: me.HMM([1.0], [[1.0]], [[0.5 + 0j, 0.5]]),
     me.ArgumentTypeError, "emission"),
    ("hmm ragged transition", lambda: me.HMM([0.5, 0.5], [[1.0], [0.5, 0.5]], np.eye(2)),
     me.ArgumentError, "transition"),
    ("metadata not an object", lambda: me.NGram(2, [1, 0], np.eye(2), metadata=[1, 2]),
     me.ArgumentTypeError, "metadata"),
    ("metadata not JSON", lambda: me.NGram(2, [1, 0], np.eye(2), metadata={"f": object()}),
     me.ArgumentTypeError, "metadata"),
    ("NGram.entropy misspelt keyword", lambda: _bigram().entropy(3, num_sample=10),
     TypeError, "num_sample"),
    ("IntervalParity.entropy bad confidence",
     lambda: me.IntervalParity(3).entropy(3, confidence=1.5), me.ArgumentError, "confidence"),
    ("json order 2.7", lambda: me.load_language(_json(kind="ngram", order=2.7, initial=[1, 0],
                                                      transition=[[1, 0], [0, 1]])),
     me.ArgumentTypeError, "order"),
    ("json order bool", lambda: me.load_language(_json(kind="ngram", order=True, initial=[1, 0],
                                                       transition=[[1, 0], [0, 1]])),
     me.ArgumentTypeError, "order"),
    ("json interval '5'", lambda: me.load_language(_json(kind="interval_parity", interval="5")),
     me.ArgumentTypeError, "interval"),
    ("json bool entry", lambda: me.load_language(_json(kind="ngram", order=2, initial=[1, 0],
                                                       transition=[[True, 0], [0, 1]])),
     me.ArgumentTypeError, "transition"),
    ("json string entry", lambda: me.load_language(_json(kind="hmm", initial=[1],
                                                         transition=[[1]],
                                                         emission=[["1"]])),
     me.ArgumentTypeError, "emission"),
    ("json metadata list", lambda: me.load_language(_json(kind="interval_parity", interval=3,
                                                          metadata=[1])),
     me.ArgumentTypeError, "metadata"),
    ("json kind not a string", lambda: me.load_language(_json(kind=["ngram"])),
     me.ArgumentError, "kind"),
    ("json nested 100000 deep",
     lambda: me.load_language(_file("deep.json", "[" * 100000 + "]" * 100000)),
     me.ArgumentError, "deep"),
    ("json top level list", lambda: me.load_language(_file("list.json", "[1, 2]")),
     me.ArgumentError, "'kind'"),
    ("json not utf-8", lambda: me.load_language(_file("bad.json", data=b"\xff\xfe\x00")),
     me.ArgumentError, "JSON"),
    ("language path is a directory", lambda: me.load_language(_file("dir.json")),
     me.ArgumentError, "directory"),
    ("npz empty file", lambda: me.load_language(_file("e.npz", data=b"")), me.ArgumentError,
     "e.npz"),
    ("npz garbage", lambda: me.load_language(_file("g.npz", data=b"not a zip at all")),
     me.ArgumentError, "g.npz"),
    ("npz without arrays", lambda: me.load_language(_empty_npz()), me.ArgumentError, "kind"),
    ("npz 8 TB by header", lambda: me.load_language(_huge_npz()), me.BudgetError, "GiB"),
    # item 4: denoiser outputs
    ("denoiser all-zero row", lambda: _call(np.zeros((1, 2, 2))), me.ArgumentError,
     "sums to 0.0"),
    ("denoiser 1e308 entries", lambda: _call(np.full((1, 2, 2), 1e308)), me.ArgumentError,
     "not a probability vector"),
    ("denoiser unnormalised", lambda: _call(np.full((1, 2, 2), 0.6)), me.ArgumentError,
     "row (0, 0) sums to 1.2"),
    ("denoiser int output", lambda: _call(np.array([[[1, 0], [0, 1]]])), me.ArgumentTypeError,
     "dtype int64"),
    ("denoiser bool output", lambda: _call(np.array([[[True, False], [False, True]]])),
     me.ArgumentTypeError, "dtype bool"),
    ("denoiser complex output", lambda: _call(np.full((1, 2, 2), 0.5 + 0j)),
     me.ArgumentTypeError, "complex"),
    ("denoiser nan", lambda: _call(np.array([[[np.nan, 1.0], [0.5, 0.5]]])), me.ArgumentError,
     "non-finite"),
    ("denoiser wrong shape", lambda: _call(np.full((1, 2, 3), 1 / 3)), me.ArgumentError,
     "shape"),
    ("sample with 1e308 denoiser",
     lambda: me.sample(_bigram(), me.Schedule.linear(2), 3, 4,
                       lambda x: np.full((*x.shape, 2), 1e308)),
     me.ArgumentError, "not a probability vector"),
    ("exact with zero-row denoiser",
     lambda: me.exact_metrics(_bigram(), me.Schedule.linear(2), 2,
                              lambda x: np.zeros((*x.shape, 2))),
     me.ArgumentError, "sums to 0.0"),
    ("direction nan", lambda: me.PerturbedOracle(_bigram(), 0.1, direction=[np.nan, 1.0]),
     me.ArgumentError, "direction"),
    ("direction not stochastic", lambda: me.PerturbedOracle(_bigram(), 0.1, direction=[0.5, 0.6]),
     me.ArgumentError, "direction"),
    ("direction negative", lambda: me.PerturbedOracle(_bigram(), 0.1, direction=[1.5, -0.5]),
     me.ArgumentError, "direction"),
    ("direction wrong shape", lambda: me.PerturbedOracle(_bigram(), 0.1, direction=[1.0]),
     me.ArgumentError, "direction"),
    ("eps_learning bool", lambda: me.PerturbedOracle(_bigram(), True), me.ArgumentError,
     "eps_learning"),
    # item 3: confidence levels
    ("sequence_error_rate confidence 1",
     lambda: me.sequence_error_rate(_bigram(), [[0, 1]], confidence=1.0), me.ArgumentError,
     "confidence"),
    ("generative_log_perplexity confidence 0",
     lambda: me.generative_log_perplexity(_bigram(), [[0, 1], [1, 1]], confidence=0),
     me.ArgumentError, "confidence"),
    ("jensen_bound confidence nan",
     lambda: me.jensen_bound(_bigram(), me.Schedule.linear(2), 2, 10, confidence=float("nan")),
     me.ArgumentError, "confidence"),
    ("HMM.entropy confidence -0.5",
     lambda: me.preset("hmm").entropy(40, num_samples=10, confidence=-0.5), me.ArgumentError,
     "confidence"),
    # item 6: refused before any work, with the estimate and the argument
    ("sample 1e12 samples", lambda: me.sample(_bigram(), me.Schedule.linear(2), 4, 10**12),
     me.BudgetError, "num_samples"),
    ("sample length 1e12", lambda: me.sample(_bigram(), me.Schedule.linear(2), 10**12, 2),
     me.BudgetError, "GiB"),
    ("sample 1e6 x 1e5", lambda: me.sample(_bigram(), me.Schedule.linear(2), 10**5, 10**6),
     me.BudgetError, "num_samples or length"),
    ("Language.sample 1e12", lambda: _bigram().sample(10**12, 10), me.BudgetError,
     "num or length"),
    ("HMM.sample 1e12", lambda: me.preset("hmm").sample(10, 10**12), me.BudgetError, "GiB"),
    ("IntervalParity.sample 1e12", lambda: me.IntervalParity(4).sample(10**12, 4),
     me.BudgetError, "num or length"),
    ("HMM.entropy Monte Carlo at 1e5", lambda: me.preset("hmm").entropy(100000),
     me.BudgetError, "num_samples"),
    ("IntervalParity posterior 1e7",
     lambda: me.posterior(me.IntervalParity(8), np.full((1, 8 * 10**6), -1)), me.BudgetError,
     "x"),
    ("posterior budget", lambda: me.posterior(me.preset("hmm"), np.full((1000, 10**5), -1)),
     me.BudgetError, "GiB"),
    ("jensen_bound 1e9 samples",
     lambda: me.jensen_bound(_bigram(), me.Schedule.linear(2), 100, 10**9), me.BudgetError,
     "num_samples"),
    ("exact engine budget", lambda: me.exact_metrics(me.preset("hmm"), me.Schedule.linear(2), 12),
     me.BudgetError, "length"),
]

# ----------------------------------------------------------------------------- theory rows
# (schedules, theory/*: overflow family, searches with no bound in time)

def _theory():
    import mdm_exact.theory as th

    return th


BIG = 10**400  # a legal length far beyond float range


THEORY_ROWS: list[tuple] = [
    # item 6: families estimate their arrays first
    ("paper_ngram 298 GiB", lambda: me.Schedule.paper_ngram(2, 1e-5), me.BudgetError, "eps"),
    ("paper_ngram eps 1e-300", lambda: me.Schedule.paper_ngram(3, 1e-300), me.BudgetError,
     "GiB"),
    ("paper_ngram n 1e6", lambda: me.Schedule.paper_ngram(10**6, 0.5), me.BudgetError, "digits"),
    ("adaptive_ngram runaway", lambda: me.Schedule.adaptive_ngram(3, 1e-6), me.BudgetError,
     "eps"),
    ("linear 1e12 steps", lambda: me.Schedule.linear(10**12), me.BudgetError, "num_steps"),
    ("cosine 1e12 steps", lambda: me.Schedule.cosine(10**12), me.BudgetError, "num_steps"),
    ("named 1e12 steps", lambda: me.Schedule.named("loglinear", 10**12), me.BudgetError,
     "num_steps"),
    ("from_alpha 1e12 steps", lambda: me.Schedule.from_alpha(lambda t: 1 - t, 10**12),
     me.BudgetError, "num_steps"),
    ("even 1e12 steps", lambda: me.FixedCountPlan.even(10**12, 10**12), me.BudgetError,
     "num_steps"),
    ("left_to_right 1e12", lambda: me.DeterministicPlan.left_to_right(10**12), me.BudgetError,
     "length"),
    ("min_length n 1e6", lambda: _theory().min_length(10**6, 0.5), me.BudgetError, "digits"),
    ("min_length long eps", lambda: _theory().min_length(10**6, 0.123456789), me.BudgetError,
     "n"),
    # item 13: silent coercions
    ("counts uint64 overflow",
     lambda: me.FixedCountPlan(np.array([2**63, 2**63], dtype=np.uint64)), me.ArgumentError,
     "counts"),
    ("counts bool", lambda: me.FixedCountPlan(np.array([True, True])), me.ArgumentTypeError,
     "counts"),
    ("sets 0.5", lambda: me.DeterministicPlan([[0.5], [1]]), me.ArgumentError, "0.5"),
    ("sets bool", lambda: me.DeterministicPlan([[True], [False]]), me.ArgumentTypeError, "sets"),
    ("sets complex", lambda: me.DeterministicPlan([[0j], [1]]), me.ArgumentTypeError, "sets"),
    ("sets huge position", lambda: me.DeterministicPlan([[0], [10**12]]), me.ArgumentError,
     "sets miss position 1"),
    ("named None", lambda: me.Schedule.named(None, 4), me.ArgumentTypeError, "schedule"),
    ("named loglinear:abc", lambda: me.Schedule.named("loglinear:abc", 4), me.ArgumentError,
     "loglinear:abc"),
    ("from_alpha wrong shape", lambda: me.Schedule.from_alpha(lambda t: np.ones(3), 4),
     me.ArgumentError, "shape (5,)"),
    ("from_alpha scalar", lambda: me.Schedule.from_alpha(lambda t: 1.0, 4), me.ArgumentError,
     "alpha(t)"),
    ("from_alpha complex grid", lambda: me.Schedule.from_alpha([1, 0.5j, 0]),
     me.ArgumentTypeError, "alpha"),
    ("masses bool", lambda: me.Schedule([True]), me.ArgumentTypeError, "masses"),
    ("masses complex", lambda: me.Schedule([1 + 0j]), me.ArgumentTypeError, "masses"),
    ("masses object text", lambda: me.Schedule(np.array(["1.0"], dtype=object)),
     me.ArgumentTypeError, "masses"),
    ("masses text", lambda: me.Schedule(["1.0"]), me.ArgumentTypeError, "masses"),
    ("eps bool", lambda: me.Schedule.paper_ngram(2, True), me.ArgumentError, "eps"),
    ("ter_bound base 0.5", lambda: _theory().ter_bound(3, 0.1, 4, 0.0, base=0.5),
     me.ArgumentError, "base"),
    ("ter_bound base 1", lambda: _theory().ter_bound(3, 0.1, 4, 0.0, base=1), me.ArgumentError,
     "base"),
    ("ter_bound base nan", lambda: _theory().ter_bound(3, 0.1, 4, 0.0, base=float("nan")),
     me.ArgumentError, "base"),
    # item 5: overflow family (answers where the value is finite and representable: see
    # tests/theory/test_extremes.py; refusals where it leaves float range)
    ("li_cai s_max 2**1100", lambda: _theory().li_cai_bound(1, 10, 2**1100), me.ArgumentError,
     "max_revealed"),
    ("kl bound L 1e400", lambda: _theory().dependency_kl_bound(1, BIG, 2, 0.1),
     me.ArgumentError, "length"),
    ("separator tail L 1e400", lambda: _theory().separator_tail_bound(BIG, 3, 0.5),
     me.ArgumentError, "length"),
    ("new location tail L 1e400", lambda: _theory().new_location_tail_bound(BIG, 0.5),
     me.ArgumentError, "length"),
    ("step dependency L 1e400",
     lambda: _theory().step_dependency_bound(me.Schedule.linear(4), BIG, 3), me.ArgumentError,
     "length"),
    ("union bound L 1e400",
     lambda: _theory().collision_union_bound(me.Schedule.linear(4), BIG), me.ArgumentError,
     "length"),
    ("max bound L 1e400", lambda: _theory().collision_max_bound(me.Schedule.linear(4), BIG),
     me.ArgumentError, "length"),
    ("multi-token k 1e400", lambda: _theory().multi_token_kl_bound(BIG, 2, 0.1),
     me.ArgumentError, "num_tokens"),
    ("case3 huge count", lambda: _theory().case3_expected_dependencies(BIG, 3),
     me.ArgumentError, "separators"),
    ("case3 nan", lambda: _theory().case3_expected_dependencies(float("nan"), 3),
     me.ArgumentError, "separators"),
    ("paper-form N 1e400", lambda: _theory().ser_lower_bound(BIG, 5, 10, 0.5), me.ArgumentError,
     "num_steps"),
    ("C.9 C nan", lambda: _theory().theorem_c9_bound(float("nan"), 10), me.ArgumentError, "C"),
    ("c9 scan to L 1e400", lambda: _theory().c9_finite_length_check(0.5, max_length=BIG),
     me.BudgetError, "max_length"),
    ("nfe Monte Carlo L 1e400",
     lambda: _theory().nfe_monte_carlo(me.Schedule.linear(4), BIG), me.BudgetError, "length"),
    ("chernoff L 1e12", lambda: _theory().chernoff_check(me.Schedule.linear(4), 10**12, 3),
     me.BudgetError, "length"),
    ("excess Monte Carlo L 1e12",
     lambda: _theory().excess_monte_carlo(me.Schedule.linear(4), 10**12, 3), me.BudgetError,
     "length"),
    # item 8: unbounded work refused up front, with the estimate
    ("oracle_ser interval 1e6",
     lambda: _theory().oracle_ser_family("linear", 10, 10**6, 10**6), me.BudgetError,
     "operations"),
    ("oracle_ser interval 1e400", lambda: _theory().oracle_ser(me.Schedule.linear(4), BIG, BIG),
     me.BudgetError, "interval"),
    ("linear N 2**62", lambda: _theory().oracle_ser_family("linear", 2**62, 5, 5),
     me.ArgumentError, "num_steps"),
    ("min steps 1e-9 cosine",
     lambda: _theory().min_steps_for_ser(5, 1000, 1e-9, family="cosine"), me.ArgumentError,
     "Lemma C.6"),
    ("min steps 1e-3 cosine",
     lambda: _theory().min_steps_for_ser(5, 1000, 1e-3, family="cosine"), me.BudgetError,
     "operations"),
    ("min steps family None", lambda: _theory().min_steps_for_ser(5, 10, 0.5, family=None),
     me.ArgumentTypeError, "family"),
    ("distinct steps N l large",
     lambda: _theory().distinct_steps_probability(me.Schedule.cosine(200_000), 100_000),
     me.BudgetError, "operations"),
]


@pytest.mark.parametrize("call, error, needle", [r[1:] for r in LIBRARY_ROWS + THEORY_ROWS],
                         ids=[r[0] for r in LIBRARY_ROWS + THEORY_ROWS])
def test_library_refuses(call, error, needle):
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, MdmExactError), "refusals come from the package's base class"
    message = str(info.value)
    assert "\n" not in message
    assert needle in message


# ----------------------------------------------------------------------------- CLI rows
# (argv, text the one-line error must contain)

CLI_ROWS: list[tuple] = [
]
