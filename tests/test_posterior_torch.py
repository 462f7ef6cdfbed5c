"""The torch backend of the posterior (``backend="torch"``, ``mdm_exact.posterior_torch``)
against the numba engine (itself checked against brute force in tests/test_posterior.py) and
against brute force on tiny cases."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdm_exact import HMM, MASK, IntervalParity, preset
from mdm_exact.errors import ArgumentError, ArgumentTypeError
from mdm_exact.posterior import in_support, log_prob, posterior, posterior_marginals
from mdm_exact.testing import hmms, masked_sequences, ngrams

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

TOL = 1e-10


def languages():
    return st.one_of(ngrams(vocab_size=st.integers(2, 4), order=st.integers(2, 3)),
                     hmms(num_states=st.integers(1, 5), vocab_size=st.integers(2, 4)))


def assert_same(expected, got):
    """A numba ``Posterior`` and a torch one agree: validity exactly, log-evidence and
    marginals to TOL on possible rows, -inf and NaN on impossible ones."""
    valid = got.valid.numpy()
    np.testing.assert_array_equal(valid, expected.valid)
    lz = got.log_evidence.numpy()
    np.testing.assert_allclose(lz[valid], expected.log_evidence[valid], rtol=0, atol=TOL)
    assert np.all(lz[~valid] == -np.inf)
    marg = got.marginals.numpy()
    np.testing.assert_allclose(marg[valid], expected.marginals[valid], rtol=0, atol=TOL)
    assert np.isnan(marg[~valid]).all()


@given(data=st.data())
def test_torch_backend_equals_numba(data):
    language = data.draw(languages())
    x = data.draw(masked_sequences(language, st.integers(1, 30)))
    got = posterior(language, torch.as_tensor(x), backend="torch")
    assert got.marginals.dtype == torch.float64 and got.marginals.device.type == "cpu"
    assert_same(posterior(language, x), got)
    np.testing.assert_array_equal(in_support(language, x, backend="torch").numpy(),
                                  in_support(language, x))
    expected = log_prob(language, x)
    lp = log_prob(language, x, backend="torch").numpy()
    np.testing.assert_array_equal(np.isfinite(lp), np.isfinite(expected))
    np.testing.assert_allclose(lp[np.isfinite(lp)], expected[np.isfinite(expected)],
                               rtol=0, atol=TOL)


@given(data=st.data())
def test_torch_backend_equals_brute_force(data, ref):
    tiny = st.integers(2, 3)
    language = data.draw(st.one_of(ngrams(vocab_size=tiny, order=tiny),
                                   hmms(num_states=st.integers(1, 3), vocab_size=tiny)))
    length = data.draw(st.integers(1, 5))
    x = data.draw(masked_sequences(language, length))
    got = posterior(language, x, backend="torch")
    joint = ref.joint(language, length)
    for row in range(x.shape[0]):
        evidence, marg = ref.condition(joint, x[row])
        assert bool(got.valid[row]) == (evidence > 0)
        if marg is not None:
            np.testing.assert_allclose(got.marginals[row].numpy(), marg, rtol=0, atol=1e-12)
            assert float(got.log_evidence[row]) == pytest.approx(np.log(evidence), abs=1e-12)


def test_rows_near_the_float_range_are_redone_in_log_space():
    # Every step costs a factor 1e-200 or 1 - 1e-200: the scaled messages get entries of 1e-200
    # and the row must be redone in log space (the numba engine does the same).
    eps = 1e-200
    language = HMM(np.array([0.5, 0.5]), np.array([[1 - eps, eps], [eps, 1 - eps]]),
                   np.array([[0.9, 0.1], [0.2, 0.8]]))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(3, 2000))
    x[rng.random(x.shape) < 0.5] = MASK
    x[2, ::2] = 0
    x[2, 1::2] = 1
    assert_same(posterior(language, x), posterior(language, x, backend="torch"))


def test_one_row_and_long_rows():
    language = preset("2-gram")
    x = language.sample(2, 5000, np.random.default_rng(1))
    x[:, 1::3] = MASK
    assert_same(posterior(language, x), posterior(language, x, backend="torch"))
    single = posterior(language, x[0], backend="torch")
    assert single.marginals.shape == (5000, 8) and single.log_evidence.ndim == 0


def test_float32_and_numpy_inputs():
    from mdm_exact.posterior_torch import posterior as torch_posterior

    language = preset("hmm")
    x = language.sample(4, 64, np.random.default_rng(2))
    x[:, ::2] = MASK
    got = torch_posterior(language, x, dtype=torch.float32)
    assert got.marginals.dtype == torch.float32
    np.testing.assert_allclose(got.marginals.numpy(), posterior(language, x).marginals,
                               rtol=0, atol=1e-5)
    marg = posterior_marginals(language, x, backend="torch")
    assert isinstance(marg, torch.Tensor)


def test_refusals():
    language = preset("2-gram")
    x = np.array([[0, MASK]])
    with pytest.raises(ArgumentError, match="backend"):
        posterior(language, x, backend="jax")
    with pytest.raises(ArgumentError, match="device"):
        posterior(language, x, device="cpu")
    with pytest.raises(ArgumentError, match="IntervalParity"):
        posterior(IntervalParity(3), np.full((1, 3), MASK), backend="torch")
    with pytest.raises(ArgumentTypeError, match="integer tokens"):
        posterior(language, torch.zeros((1, 2)), backend="torch")
    with pytest.raises(ArgumentError, match="tokens in"):
        posterior(language, torch.tensor([[0, 8]]), backend="torch")
    with pytest.raises(ArgumentError, match="dtype"):
        from mdm_exact.posterior_torch import posterior as torch_posterior
        torch_posterior(language, x, dtype=torch.int64)
    first, then = np.argwhere(language.chain_arrays.transition == 0)[0]
    impossible = np.array([[first, then]])
    with pytest.raises(ArgumentError, match="probability zero"):
        posterior_marginals(language, impossible, backend="torch")


def test_missing_torch_is_one_clear_line():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from mdm_exact import preset\nfrom mdm_exact.posterior import posterior\n"
            "posterior(preset('2-gram'), [[0, -1]], backend='torch')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode != 0
    assert "backend='torch' needs PyTorch, which is not installed: pip install " \
           "'mdm_exact[torch]'" in res.stderr
