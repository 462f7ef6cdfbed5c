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
# # A 10-minute tour of mdm_exact
#
# `mdm_exact` gives exact ground truth for masked diffusion language models (MDMs) on formal
# languages, following Feng et al., *Theoretical Benefit and Limitation of Diffusion Language
# Model* (arXiv 2502.09622). The data flows one way:
#
# language q -> exact posterior q(x_i | revealed) -> factorized parallel sampler -> metrics
# (SER, generative perplexity, KL) -> the paper's bounds, checked against the exact numbers.
#
# Run it as a script (`python examples/01_tour.py`) or open it as a notebook with jupytext.
# `MDM_EXACT_QUICK=1` shrinks every sample count so that the whole tour takes seconds.

# %%
import os

import numpy as np

import mdm_exact as me
from mdm_exact import theory

QUICK = os.environ.get("MDM_EXACT_QUICK") == "1"
SAMPLES = 64 if QUICK else 1000

# %% [markdown]
# ## 1. A language q
#
# `preset` gives the paper's Table 1 languages (random n-grams and an HMM over 8 tokens,
# Algorithms 1 and 2 of Appendix E.1). Tokens are `0..V-1`; sequences are `(num, L)` int64
# arrays. Every language can sample, score (`log_prob`, in nats) and test support exactly.

# %%
lang = me.preset("2-gram")
print(lang, "pruned fraction of the transition table:", lang.metadata["pruned_fraction"])
x = lang.sample(3, 12, rng=0)
print(x)
print("log q(x) =", lang.log_prob(x), " in supp q:", lang.in_support(x))
print("entropy rate H(q)/L at L = 12:", lang.entropy(12).value / 12, "nats/token")

# %% [markdown]
# ## 2. The exact posterior (the ideal denoiser)
#
# Masked positions hold `MASK = -1`. `posterior` runs a masked forward-backward and returns
# q(x_i = v | revealed tokens) for every position: shape `(batch, L, V)`. This is what a perfectly
# trained MDM predicts (eq. 2's q_{0|t}).

# %%
masked = x.copy()
masked[:, 3:9] = me.MASK
post = me.posterior(lang, masked)
print("marginals:", post.marginals.shape, " log-evidence:", np.round(post.log_evidence, 3))
print("q(x_5 | revealed) for row 0:", np.round(post.marginals[0, 5], 3))

# %% [markdown]
# ## 3. Factorized parallel sampling
#
# A `Schedule` says with which probability p^(k) a position is revealed at step k (the paper's
# alpha_t on the grid t_i = i/N). At each step, every position revealed at that step is drawn
# **independently** from the denoiser's marginal: this is where parallel sampling loses the
# dependencies between tokens. The default denoiser is the exact `Oracle`.

# %%
length = 64
for steps in (4, 16, 64):
    res = me.sample(lang, me.Schedule.linear(steps), length, SAMPLES, rng=0)
    ser = me.sequence_error_rate(lang, res.tokens)
    print(f"N = {steps:3d}: SER = {ser}")

# %% [markdown]
# ## 4. Exact metrics at small L
#
# For tiny lengths, `exact_metrics` computes the sampler's whole output distribution p over V^L
# and from it KL(q || p), the TER of eq. 4, SER (eq. 5), the generative perplexity and the
# Lemma B.2 (Jensen) upper bound E_tau KL(q || p_tau). Everything is in nats; every quantity of a
# whole sequence also has its `_per_token` twin (the same / L).

# %%
m = me.exact_metrics(lang, me.Schedule.linear(2), 4)
print(f"KL(q||p) = {m.kl:.4f} nats per sequence = {m.kl_per_token:.4f} per token, Jensen bound "
      f"= {m.jensen_bound:.4f} nats per sequence, SER = {m.ser:.4f}")
print(f"log TER(p) = {m.log_ter:.4f} >= log TER(q) = {m.log_ter_q:.4f} nats/token (the TER gap "
      f"log_ter_gap = KL/L = {m.log_ter_gap:.4f})")
mc = me.jensen_bound(lang, me.Schedule.linear(2), 4, SAMPLES, rng=0)
print(f"Monte-Carlo Jensen bound at the same setting: {mc}")

# %% [markdown]
# A model with learning error: `PerturbedOracle` moves each masked marginal until its KL to the
# oracle is exactly eps_learning (Assumption 4.1 with equality).

# %%
noisy = me.PerturbedOracle(lang, 0.05)
m_noisy = me.exact_metrics(lang, me.Schedule.linear(2), 4, noisy)
print(f"eps_learning = 0.05: KL(q||p) = {m_noisy.kl:.4f}, SER = {m_noisy.ser:.4f}")

# %% [markdown]
# ## 5. The paper's bounds
#
# **Theorem 4.2** (n-grams): with Lemma B.12's schedule, a number of steps independent of L keeps
# the TER gap below eps_learning + 4 eps log|V| once L >= L_0.

# %%
bound = theory.ter_bound(2, 0.2, lang.vocab_size, 0.0)
print(f"Theorem 4.2, n = 2, eps = 0.2: log TER gap <= {bound.log_ter_gap_bound:.3f} "
      f"nats/token with N = {bound.num_steps} steps for L >= {bound.min_length}")
sched = me.Schedule.paper_ngram(2, 0.2)
print("B.9 bound at L = 2000 (Monte Carlo of the dependency excess):",
      theory.excess_monte_carlo(sched, 2000, 2, num_samples=8, seed=0).value
      * np.log(lang.vocab_size), "nats/token")

# %% [markdown]
# **Theorem 4.4** (SER): on Example C.7's interval-parity language the exact SER of the oracle
# sampler depends on N/L only, and with N <= L/2 it is at least 1/2.

# %%
for L in (50, 500, 5000):
    N = L // 2
    ser = theory.oracle_ser(np.full(N, 1.0 / N), 5, L)
    print(f"L = {L:5d}, N = L/2: exact SER = {ser:.4f}, Theorem C.9 bound = "
          f"{theory.theorem_c9_bound(0.5, L, 63 / 128, 5):.4f}")
print("smallest N with SER <= 0.1 at L = 500:", theory.min_steps_for_ser(5, 500, 0.1))

# %% [markdown]
# **Li & Cai's bound** needs the information profile sum_i I(X_i; X_-i), computed exactly here.
# With two tokens per step (a fixed-count plan), it must lie above the exact Lemma B.2 value.

# %%
profile = theory.mutual_information_profile(lang, 4)
plan = me.FixedCountPlan.even(4, 2)
exact_plan = me.exact_metrics(lang, plan, 4)
print("sum_i I(X_i; X_-i) at L = 4:", profile.total)
print(f"exact E_tau KL(q||p_tau) = {exact_plan.jensen_bound:.4f} <= Li & Cai bound = "
      f"{theory.li_cai_bound(profile.total.value, 4, 2):.4f} nats")

# %% [markdown]
# Next: `02_property_tests.py` (your own property tests), `03_figures.py` (the paper's figures)
# and `04_train_small_mdm.py` (a learned denoiser measured against the exact one).
