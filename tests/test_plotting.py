"""Figures render in quick mode, with the expected axes, titles, labels and legends.

No pixel comparisons: the PNG must exist, decode, be large and not blank; the structure is read
back from the ``Figure``. Each figure's numbers are computed once per module (``data``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest

from mdm_exact import plotting

EXPECTED_AXES = {"fig1": 2, "theorem-4.4": 2, "theorem-4.2": 3}
DATA = {
    "fig1": plotting.figure_1_data,
    "theorem-4.4": plotting.figure_theorem_4_4_data,
    "theorem-4.2": plotting.figure_theorem_4_2_data,
}


pytestmark = pytest.mark.usefixtures("one_numba_thread")


@pytest.fixture(scope="module")
def data():
    return {name: fn(quick=True) for name, fn in DATA.items()}


def test_registry_is_complete():
    tested_elsewhere = {"policies"}  # tests/test_policies_figure.py
    assert set(plotting.FIGURES) == set(EXPECTED_AXES) | tested_elsewhere
    assert set(EXPECTED_AXES) == set(DATA)


def test_import_does_not_load_matplotlib():
    code = ("import sys, mdm_exact, mdm_exact.plotting, mdm_exact.cli; "
            "sys.exit(any(m == 'matplotlib' or m.startswith('matplotlib.') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


@pytest.mark.parametrize("name", sorted(EXPECTED_AXES))
def test_figure_structure(name, data):
    fig = plotting.FIGURES[name](data=data[name])
    axes = fig.get_axes()
    assert len(axes) == EXPECTED_AXES[name]
    assert fig.get_suptitle()
    assert fig.get_supxlabel().startswith("Parameters:")
    for ax in axes:
        assert ax.get_title()
        assert ax.get_xlabel() and ax.get_ylabel()
        # every y label carries its unit in parentheses, every x label its quantity
        assert "(" in ax.get_ylabel() and ")" in ax.get_ylabel()
        legend = ax.get_legend()
        assert legend is not None and len(legend.get_texts()) >= 2
    labels = " ".join(ax.get_ylabel() for ax in axes)
    if name != "theorem-4.4":
        assert "nats" in labels


@pytest.mark.parametrize("name", sorted(EXPECTED_AXES))
def test_png_is_a_real_image(name, data, tmp_path):
    from matplotlib.image import imread

    path = tmp_path / f"{name}.png"
    plotting.FIGURES[name](data=data[name]).savefig(path, dpi=80)
    assert path.stat().st_size > 20_000
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.shape[0] > 300 and img.shape[1] > 600
    assert img[..., :3].std() > 0.05  # not blank
    assert len(np.unique(img[..., :3].reshape(-1, 3), axis=0)) > 50  # lines, bands, text


def test_fig1_numbers(data):
    d = data["fig1"]
    assert d.steps == (8, 16, 32) and d.length == 32
    for arr in (d.ser, d.ser_low, d.ser_high):
        assert np.all((0 <= arr) & (arr <= 1))
    assert np.all(d.ser_low <= d.ser) and np.all(d.ser <= d.ser_high)
    assert np.all(d.gen_ppl_low <= d.gen_ppl) and np.all(d.gen_ppl <= d.gen_ppl_high)
    # perplexities of a V = 8 language lie in [1, 8]; the AR value is the entropy rate
    assert np.all((1 <= d.gen_ppl) & (d.gen_ppl <= 8)) and np.all(d.ar_gen_ppl <= 8)
    ngrams = [i for i, n in enumerate(d.languages) if n.endswith("gram")]
    assert np.all(d.ar_gen_ppl_low[ngrams] == d.ar_gen_ppl_high[ngrams])  # exact


def test_theorem_4_4_numbers(data):
    d = data["theorem-4.4"]
    # the curves for different L collapse onto each other (N/L is all that matters)
    assert np.max(np.ptp(d.ser, axis=0)) < 0.02
    # exact SER above Lemma C.6's bound; above Theorem C.9's explicit bound at the largest L
    assert np.all(d.ser >= d.c6_bound - 1e-12)
    assert np.all(d.ser[-1] >= d.c9_bound - 1e-12)
    # steps needed for SER <= 0.1 are linear in L, and never below what Lemma C.6 allows
    per_token = d.min_steps / np.asarray(d.min_lengths)
    assert np.ptp(per_token) / per_token.mean() < 0.01
    assert np.all(d.min_steps >= d.min_steps_c6)


def test_theorem_4_2_numbers(data):
    d = data["theorem-4.2"]
    assert np.all(d.exact_kl <= d.exact_jensen + 1e-12)  # Lemma B.2, exact
    assert np.all(d.mc_jensen_high < d.b9_low)  # Lemma B.9 holds with room to spare
    assert np.all(d.b9 <= d.b11 + 1e-9)  # the analytic bound is above the Monte Carlo excess
    assert np.all(d.mc_jensen_high < d.li_cai)
    assert d.schedules["A"].num_steps == 65 and d.min_length == 939
    # The true KL (interval DP) lies between -log(1 - SER) and the Jensen bound (intervals).
    jensen_high = d.mc_jensen_high[[d.lengths.index(length) for length in d.kl_lengths]]
    assert len(d.kl_lengths) and np.all(np.isfinite(d.true_kl))
    assert np.all(d.true_kl_low <= jensen_high) and np.all(d.ser_lower_low <= d.true_kl_high)


def test_run_figure_cli(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    plotting.add_figure_arguments(parser)
    out = tmp_path / "t44.png"
    args = parser.parse_args(["theorem-4.4", "--out", str(out), "--quick", "--dpi", "60"])
    assert args.func(args) == 0
    assert out.stat().st_size > 10_000
    assert str(out) in capsys.readouterr().out


def test_run_figure_rejects_inapplicable_options(tmp_path):
    parser = argparse.ArgumentParser()
    plotting.add_figure_arguments(parser)
    args = parser.parse_args(["theorem-4.4", "--out", str(tmp_path / "x.png"), "--length", "64"])
    with pytest.raises(ValueError, match="--length does not apply"):
        plotting.run_figure(args)
    args = parser.parse_args(["fig1", "--out", str(tmp_path / "x.png"), "--samples", "0"])
    with pytest.raises(ValueError, match="--samples must be positive"):
        plotting.run_figure(args)
    args = parser.parse_args(["fig1", "--out", str(tmp_path / "missing" / "x.png")])
    with pytest.raises(FileNotFoundError):
        plotting.run_figure(args)
