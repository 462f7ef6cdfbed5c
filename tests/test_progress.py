"""Progress bars: every long call draws one on stderr when ``progress=True`` (here with the bar's
delay forced to 0) and writes nothing when ``progress=False``. Every case is tiny."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import mdm_exact as me
import mdm_exact.verify as mv
from mdm_exact import _utils, plotting
from mdm_exact.exact import exact_metrics
from mdm_exact.metrics import jensen_bound
from mdm_exact.policies import parse_policy
from mdm_exact.sampling import Oracle, sample
from mdm_exact.theory.ngram import excess_monte_carlo


@pytest.fixture
def no_delay(monkeypatch):
    monkeypatch.setattr(_utils, "PROGRESS_DELAY", 0)


def _lang():
    return me.preset("2-gram")


@pytest.fixture
def two_checks(monkeypatch):
    monkeypatch.setattr(mv, "CHECKS", (("one", lambda quick, rng: []),
                                       ("two", lambda quick, rng: [])))


def _evaluate(progress):
    pytest.importorskip("torch")
    from mdm_exact.nn.evaluate import evaluate

    lang = _lang()
    return evaluate(lang, 3, [2], 2, mdm=Oracle(lang), learning_error_sequences=2,
                    progress=progress)


CASES = {
    "sample": (lambda p: sample(_lang(), me.Schedule.linear(2), 3, 2, rng=0, progress=p),
               "steps"),
    "jensen_bound": (lambda p: jensen_bound(_lang(), me.Schedule.linear(2), 3, 2, rng=0,
                                            progress=p), "Jensen bound steps"),
    "excess_monte_carlo": (lambda p: excess_monte_carlo(me.Schedule.linear(2), 4, 2,
                                                        num_samples=2, seed=0, progress=p),
                           "excess instances"),
    "exact_metrics": (lambda p: exact_metrics(_lang(), me.Schedule.linear(2), 2, progress=p),
                      "exact metrics"),
    "exact_metrics_policy": (lambda p: exact_metrics(_lang(), parse_policy("threshold:0.5"),
                                                     2, progress=p), "exact policy steps"),
    "verify": (lambda p: mv.verify(progress=p), "verify"),
    "figure_1_data": (lambda p: plotting.figure_1_data(
        length=3, steps=(2,), num_samples=2, languages=("2-gram",), progress=p), "figure 1"),
    "figure_theorem_4_4_data": (lambda p: plotting.figure_theorem_4_4_data(
        quick=True, lengths=(50,), min_lengths=(50,), progress=p), "theorem 4.4"),
    "evaluate": (_evaluate, "evaluate"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bar_on_stderr_only_with_progress(case, no_delay, two_checks, capsys):
    run, desc = CASES[case]
    run(False)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    run(True)
    out, err = capsys.readouterr()
    assert out == "" and desc in err


def test_bar_waits_for_its_delay(capsys):
    """With the package's delay a call shorter than it draws nothing, even with progress."""
    assert _utils.PROGRESS_DELAY == 2
    with _utils.progress_bar(True, total=3, desc="quick") as bar:
        bar.set_postfix_str("x", refresh=False)
        bar.update(3)
    assert capsys.readouterr().err == ""


def test_postfix_does_not_draw_before_the_delay(capsys):
    """A postfix set with refresh=False leaves the bar hidden; the default refresh would draw
    it at once (the reason ``progress_bar`` asks for refresh=False)."""
    bar = _utils.progress_bar(True, total=1, desc="hidden")
    bar.set_postfix_str("x", refresh=False)
    bar.close()
    assert capsys.readouterr().err == ""
    bar = _utils.progress_bar(True, total=1, desc="drawn")
    bar.set_postfix_str("x")
    bar.close()
    assert "drawn" in capsys.readouterr().err


def test_evaluate_counts_every_step(monkeypatch):
    """The evaluate bar ends at its total: each row's N (L for AR), one per masking level and
    one for the entropy rate, whatever the empty steps."""
    pytest.importorskip("torch")
    ev = importlib.import_module("mdm_exact.nn.evaluate")  # the module, not the function
    seen = []

    class Bar:
        n = 0

        def __init__(self, *args, total=None, **kwargs):
            seen.append(self)
            self.total = total

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def set_postfix_str(self, *args, **kwargs):
            pass

        def update(self, k=1):
            assert k >= 0  # never more calls than steps
            self.n += k

    lang = _lang()
    monkeypatch.setattr(ev, "progress_bar", Bar)
    ev.evaluate(lang, 4, [2, 64], 2, mdm=Oracle(lang), ar=Oracle(lang),
                learning_error_sequences=2, progress=True)
    (bar,) = seen
    assert bar.total == 2 * (2 + 64) + 4 + len(ev.DEFAULT_TIMES) + 1
    assert bar.n == bar.total


def test_rng_unused():
    """The bars never draw from a generator: results are the same with and without them."""
    a = jensen_bound(_lang(), me.Schedule.linear(3), 4, 4, rng=np.random.default_rng(1))
    b = jensen_bound(_lang(), me.Schedule.linear(3), 4, 4, rng=np.random.default_rng(1),
                     progress=True)
    assert a == b
