"""mdm_exact: exact ground truth for masked diffusion language models.

Feng et al., "Theoretical Benefit and Limitation of Diffusion Language Model" (arXiv 2502.09622):
languages q, the exact reverse conditionals, the distribution factorized parallel unmasking really
produces, its KL / TER / SER, and every bound of the paper checked numerically.
"""

from ._utils import DEFAULT_MAX_BYTES, MASK
from .errors import ArgumentError, ArgumentTypeError, BudgetError, MdmExactError, MissingFileError
from .estimate import Estimate
from .exact import ExactMetrics, exact_metrics, output_distribution
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
from .likelihood import KLEstimate, kl_estimate, log_likelihood, ser_kl_lower_bound
from .metrics import (
    generative_log_perplexity,
    generative_perplexity,
    jensen_bound,
    sequence_error_rate,
)
from .plan_files import load_plan, plan_from_dict, save_plan
from .policies import (
    EntropyBounded,
    Factor,
    Policy,
    RandomTopK,
    Threshold,
    TopK,
    is_policy,
    parse_policy,
)
from .posterior import Posterior, in_support, log_prob, posterior, posterior_marginals
from .sampling import Oracle, PerturbedOracle, SampleResult, sample
from .schedules import DeterministicPlan, FixedCountPlan, Schedule
from .theory.interval import interval_parity_ser

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ArgumentError",
    "ArgumentTypeError",
    "BudgetError",
    "MdmExactError",
    "MissingFileError",
    "HMM",
    "MASK",
    "PRESETS",
    "DeterministicPlan",
    "EntropyBounded",
    "Estimate",
    "ExactMetrics",
    "Factor",
    "FixedCountPlan",
    "IntervalParity",
    "KLEstimate",
    "Language",
    "NGram",
    "Oracle",
    "PerturbedOracle",
    "Policy",
    "Posterior",
    "RandomTopK",
    "SampleResult",
    "Schedule",
    "Threshold",
    "TopK",
    "exact_metrics",
    "generative_log_perplexity",
    "generative_perplexity",
    "in_support",
    "interval_parity_ser",
    "is_policy",
    "jensen_bound",
    "kl_estimate",
    "load_language",
    "load_plan",
    "log_likelihood",
    "log_prob",
    "output_distribution",
    "parse_policy",
    "plan_from_dict",
    "posterior",
    "posterior_marginals",
    "preset",
    "random_hmm",
    "random_ngram",
    "sample",
    "save_language",
    "save_plan",
    "sequence_error_rate",
    "ser_kl_lower_bound",
]
