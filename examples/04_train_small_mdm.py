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
# # Training a small MDM and measuring it exactly
#
# A learned denoiser is just another callable for `mdm_exact`: `mdm_exact.nn.TorchDenoiser` maps
# `(batch, L)` tokens with `MASK = -1` to `(batch, L, V)` probabilities. So the exact machinery that
# scores the oracle scores a network too: its exact output distribution at small L, its learning
# error (Assumption 4.1) and its Monte-Carlo SER / perplexity at any L.
#
# Needs the `torch` extra (`pip install -e ".[torch]"`); without it this script says so and exits.
# The model here is deliberately tiny (one transformer block, a few hundred steps on a CPU);
# `MDM_EXACT_QUICK=1` trains for 25 steps only.

# %%
import os
import sys
import tempfile

import numpy as np

import mdm_exact as me

try:
    from mdm_exact import nn as mnn
except ImportError as err:
    print(f"skipped: {err}")
    sys.exit(0)

QUICK = os.environ.get("MDM_EXACT_QUICK") == "1"
LENGTH = 4  # (V+1)^L = 6561 partial sequences: the exact engine enumerates them all

# %% [markdown]
# ## Train
#
# The MDLM continuous-time ELBO on an endless seeded stream of samples from the Table 1 2-gram.
# `train` writes a resumable run directory; here a temporary one.

# %%
language = me.preset("2-gram")
model_config = mnn.ModelConfig("mdm", language.vocab_size, LENGTH, width=32, depth=1, heads=2)
train_config = mnn.TrainConfig(length=LENGTH, steps=25 if QUICK else 600, batch_size=128,
                               lr=3e-3, seed=0)
run_dir = tempfile.mkdtemp(prefix="mdm_exact_run_")
result = mnn.train(language, model_config, train_config, run_dir, device="cpu", progress=False)
print(f"{result.step} steps, loss {result.losses[:10].mean():.3f} -> "
      f"{result.losses[-10:].mean():.3f} nats/token (entropy rate "
      f"{language.entropy(LENGTH).value / LENGTH:.3f})")
denoiser = mnn.TorchDenoiser(result.model)

# %% [markdown]
# ## Measure the learning error (Assumption 4.1)
#
# KL(q(x_i | x_t) || p_theta(x_i | x_t)) at masked positions, against the exact posterior.

# %%
err = mnn.learning_error(language, denoiser, LENGTH, num_sequences=64 if QUICK else 256, rng=0)
print(f"learning error: mean {err.mean:.4f}, 95th percentile {err.p95:.4f}, max {err.max:.4f} "
      "nats")

# %% [markdown]
# ## Exact metrics of the trained model vs the oracle
#
# At L = 4 the whole output distribution is computed exactly, for the network and for the ideal
# denoiser, on the same schedules (KL in nats per sequence). The gap between the two rows is what
# training left; the oracle row is what parallel sampling itself costs. The generative
# perplexity is infinite as soon as SER > 0 (the pruned language gives log q = -inf), so
# `evaluate` below also reports it over the valid samples only.

# %%
print(f"{'N':>3} {'model':<7} {'KL(q||p)':>9} {'Jensen bound':>12} {'SER':>7}")
for steps in (1, 2, 4):
    schedule = me.Schedule.linear(steps)
    for name, den in (("network", denoiser), ("oracle", None)):
        m = me.exact_metrics(language, schedule, LENGTH, den)
        print(f"{steps:>3} {name:<7} {m.kl:>9.4f} {m.jensen_bound:>12.4f} {m.ser:>7.4f}")

# %% [markdown]
# ## Monte Carlo at any length
#
# `mdm_exact.nn.evaluate` samples with ddpm_cache for each N, beside the oracle, and reports
# generative log-perplexity and SER with 95% intervals.

# %%
report = mnn.evaluate(language, LENGTH, [1, 2, 4], 64 if QUICK else 512, mdm=denoiser,
                      learning_error_sequences=32)
print(report.format())
np.testing.assert_array_less(-1e-12, [r.ser.value for r in report.rows])
