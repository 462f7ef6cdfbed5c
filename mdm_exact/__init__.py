"""mdm_exact: exact ground truth for masked diffusion language models.

Feng et al., "Theoretical Benefit and Limitation of Diffusion Language Model" (arXiv 2502.09622):
languages q, the exact reverse conditionals, the distribution factorized parallel unmasking really
produces, its KL / TER / SER, and every bound of the paper checked numerically.

The numba-backed engines are imported on first use, so that ``import mdm_exact`` and the CLI
start fast.
"""

from importlib import import_module

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
from .schedules import DeterministicPlan, FixedCountPlan, Schedule

__version__ = "0.1.0"

_LAZY = {
    "Posterior": "posterior",
    "in_support": "posterior",
    "log_prob": "posterior",
    "posterior": "posterior",
    "posterior_marginals": "posterior",
    "Oracle": "sampling",
    "PerturbedOracle": "sampling",
    "SampleResult": "sampling",
    "sample": "sampling",
    "ExactMetrics": "exact",
    "exact_metrics": "exact",
    "output_distribution": "exact",
    "generative_log_perplexity": "metrics",
    "generative_perplexity": "metrics",
    "jensen_bound": "metrics",
    "sequence_error_rate": "metrics",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mdm_exact' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "HMM",
    "MASK",
    "PRESETS",
    "DeterministicPlan",
    "Estimate",
    "FixedCountPlan",
    "IntervalParity",
    "Language",
    "NGram",
    "Schedule",
    "load_language",
    "preset",
    "random_hmm",
    "random_ngram",
    "save_language",
    *_LAZY,
]
