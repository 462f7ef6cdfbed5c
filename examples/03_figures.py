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
# # Reproducing the figures
#
# Every figure of `mdm_exact.plotting` has a data function (numbers only) and a figure function
# (draws them, returns a matplotlib `Figure`). The same figures come from the command line:
#
# ```bash
# mdm-exact figure fig1 --out fig1.png            # the paper's setting, L = 512 (tens of minutes)
# mdm-exact figure theorem-4.4 --out t44.png --quick
# ```
#
# This script writes PNGs to `$MDM_EXACT_FIGURE_DIR` (default `./figures`). With
# `MDM_EXACT_QUICK=1` every figure uses its `quick` setting (seconds instead of minutes).

# %%
import os
from pathlib import Path

import numpy as np

from mdm_exact import plotting

QUICK = os.environ.get("MDM_EXACT_QUICK") == "1"
OUT = Path(os.environ.get("MDM_EXACT_FIGURE_DIR", "figures"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Fig. 1 with the exact oracle
#
# Generative perplexity (on the threshold-0 Table 1 languages) and SER (on the pruned ones)
# against the number of steps N, with the autoregressive value (N = L, left to right) last.
# More steps help both; SER needs many more steps than perplexity does.

# %%
fig1 = plotting.figure_1_data(quick=QUICK)
for name, ser, ppl, ar in zip(fig1.languages, fig1.ser, fig1.gen_ppl, fig1.ar_gen_ppl,
                              strict=True):
    print(f"{name:7s} SER at N = {fig1.steps[0]}: {ser[0]:.3f}, at N = L: {ser[-1]:.3f};  "
          f"GenPPL {ppl[0]:.3f} -> {ppl[-1]:.3f} (AR {ar:.3f})")
plotting.figure_1(data=fig1).savefig(OUT / "fig1.png", dpi=120)

# %% [markdown]
# ## Theorem 4.4 / Example C.7
#
# The exact SER depends on N/L only (the curves for different L coincide), it stays above the
# Lemma C.6 / Theorem C.9 lower bounds, and the N needed for SER <= 0.1 grows linearly in L.

# %%
t44 = plotting.figure_theorem_4_4_data(quick=QUICK)
spread = np.max(np.ptp(t44.ser, axis=0))
print(f"largest SER difference between lengths at equal N/L: {spread:.4f}")
print("smallest N for SER <= 0.1 per token:", np.round(t44.min_steps / t44.min_lengths, 3))
plotting.figure_theorem_4_4(data=t44).savefig(OUT / "theorem-4.4.png", dpi=120)

# %% [markdown]
# ## Theorem 4.2 / Lemma B.12
#
# Lemma B.12's two schedules, and the KL per token at a fixed number of steps: flat in L, below
# Lemma B.9's bound, Li & Cai's bound and Theorem 4.2's 4 eps log|V|.

# %%
t42 = plotting.figure_theorem_4_2_data(quick=QUICK)
print("exact KL / L at L =", t42.exact_lengths, ":", np.round(t42.exact_kl, 4))
print("Monte-Carlo Jensen bound / L at L =", t42.lengths, ":", np.round(t42.mc_jensen, 4))
print("Lemma B.9 bound / L:", np.round(t42.b9, 4), " Theorem 4.2:", round(t42.theorem, 4))
plotting.figure_theorem_4_2(data=t42).savefig(OUT / "theorem-4.2.png", dpi=120)

# %%
print("wrote", sorted(str(p) for p in OUT.glob("*.png")))
