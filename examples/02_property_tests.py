# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Writing your own property-based tests with `mdm_exact.testing`
#
# `mdm_exact.testing` ships the hypothesis strategies the project's own tests use:
#
# - `ngrams()`, `hmms()`, `interval_parity()`: random languages (tables with exact zeros, so
#   supports are irregular; `dyadic=True` makes every entry a multiple of 1/64);
# - `small_languages()`: any of the three, tiny enough to enumerate all V^L sequences;
# - `masked_sequences(language, length)`: `(batch, L)` arrays with `MASK = -1` at random positions.
#
# A property test states something that must hold for *every* language and schedule, and lets
# hypothesis search for a counterexample. Below are three, each tied to a statement of the paper.
# Copy them into a `tests/test_*.py` file and run `pytest`; here they are called directly (calling
# a `@given` function runs the whole search). Needs the `test` extra (`pip install -e ".[test]"`).
# `MDM_EXACT_QUICK=1` runs 5 examples per property instead of 25.

# %%
import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import mdm_exact as me
from mdm_exact import theory
from mdm_exact.testing import masked_sequences, ngrams, small_languages

EXAMPLES = 5 if os.environ.get("MDM_EXACT_QUICK") == "1" else 25
# deadline=None: the first call of a numba kernel compiles it, which would trip the deadline.
PROFILE = settings(max_examples=EXAMPLES, deadline=None)

# %% [markdown]
# ## Property 1: the posterior is a distribution, and the revealed tokens are kept
#
# For any language and any partially masked batch whose revealed tokens are possible, every row
# of `posterior_marginals` sums to 1 and is one-hot at revealed positions.

# %%
@PROFILE
@given(st.data())
def test_posterior_rows_are_distributions(data):
    language = data.draw(small_languages())
    length = 2 * getattr(language, "interval", 3)
    x = data.draw(masked_sequences(language, length, arbitrary_tokens=False))
    marginals = me.posterior_marginals(language, x)
    assert marginals.shape == (*x.shape, language.vocab_size)
    np.testing.assert_allclose(marginals.sum(axis=-1), 1.0, atol=1e-12)
    rows, cols = np.nonzero(x != me.MASK)
    np.testing.assert_allclose(marginals[rows, cols, x[rows, cols]], 1.0)


test_posterior_rows_are_distributions()
print("property 1 holds on", EXAMPLES, "examples")

# %% [markdown]
# ## Property 2: Lemma B.2 (Jensen) and the TER identity, exactly
#
# For any small language and any schedule, the exact KL(q || p) of the sampler is at most the
# Jensen bound E_tau KL(q || p_tau), and log TER(p) = log TER(q) + KL(q || p) / L (Theorem B.13).
# `exact_metrics` enumerates everything, so the check is exact up to rounding.

# %%
@PROFILE
@given(st.data(), st.integers(1, 3))
def test_jensen_bounds_the_exact_kl(data, steps):
    language = data.draw(small_languages())
    length = getattr(language, "interval", 3)
    masses = data.draw(st.lists(st.floats(0.05, 1.0), min_size=steps, max_size=steps))
    schedule = me.Schedule(np.array(masses) / np.sum(masses))
    m = me.exact_metrics(language, schedule, length)
    assert m.kl <= m.jensen_bound + 1e-9
    assert abs(m.log_ter - (m.log_ter_q + m.kl / length)) < 1e-9
    assert -1e-12 <= m.ser <= 1.0 + 1e-12  # 1 - p(supp q), rounding either way


test_jensen_bounds_the_exact_kl()
print("property 2 holds on", EXAMPLES, "examples")

# %% [markdown]
# ## Property 3: Lemma B.8 for one instance, on random n-grams
#
# For a fixed instance tau (a `DeterministicPlan`), the oracle's KL(q || p_tau) is at most
# D_tau log|V| with D_tau the dependency excess of Definition B.5/B.7
# (`theory.total_dependencies`). `dyadic=True` keeps the tables exactly representable.

# %%
@PROFILE
@given(ngrams(order=st.integers(2, 3), vocab_size=st.integers(2, 3), dyadic=True),
       st.lists(st.integers(0, 2), min_size=5, max_size=5))
def test_lemma_b8(language, step_of_position):
    steps = np.array(step_of_position)
    sets = [np.flatnonzero(steps == k) for k in range(steps.max() + 1)]
    plan = me.DeterministicPlan(sets)
    kl = me.exact_metrics(language, plan, steps.size).kl
    excess = int(theory.total_dependencies(steps[None, :], language.order)[0])
    assert kl <= excess * np.log(language.vocab_size) + 1e-9


test_lemma_b8()
print("property 3 holds on", EXAMPLES, "examples")

# %% [markdown]
# When a property fails, hypothesis shrinks the example and prints it; the strategies draw a seed
# for the random tables, so the report is enough to rebuild the language. Set the environment
# variable `HYPOTHESIS_PROFILE=thorough` in the project's own test suite for 500 examples.
