"""mdm_exact: exact ground truth for masked diffusion language models.

Feng et al., "Theoretical Benefit and Limitation of Diffusion Language Model" (arXiv 2502.09622):
languages q, the exact reverse conditionals, the distribution factorized parallel unmasking really
produces, its KL / TER / SER, and every bound of the paper checked numerically.
"""

from ._utils import MASK
from .estimate import Estimate
from .languages import (
    HMM,
    PRESETS,
    IntervalParity,
    Language,
    NGram,
    load_language,
    preset,
    random_hmm,
    random_ngram,
    save_language,
)
from .posterior import Posterior, in_support, log_prob, posterior, posterior_marginals

__version__ = "0.1.0"

__all__ = [
    "HMM",
    "MASK",
    "PRESETS",
    "Estimate",
    "IntervalParity",
    "Language",
    "NGram",
    "Posterior",
    "in_support",
    "load_language",
    "log_prob",
    "posterior",
    "posterior_marginals",
    "preset",
    "random_hmm",
    "random_ngram",
    "save_language",
]
