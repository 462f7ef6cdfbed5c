"""Optional torch subpackage: learned denoisers measured against the exact language.

- ``model``: a bidirectional transformer denoiser with the SUBS parameterization (MDLM) and a
  causal transformer of the same shape as the autoregressive baseline;
- ``train``: the MDLM continuous-time ELBO (or next-token cross-entropy) on an endless seeded
  stream of samples from any ``mdm_exact`` language; resumable checkpoints;
- ``sample``: ``TorchDenoiser``, a denoiser for ``mdm_exact.sampling.sample``, and the ddpm /
  ddpm_cache / fixed-count / left-to-right samplers with their network-call counts;
- ``evaluate``: generative log-perplexity under q, SER by the exact support test, the measured
  learning error of Assumption 4.1, the Oracle on the same schedules, adaptive policies with the
  learned model's exact KL(q || p), and the results JSON beside the checkpoint;
- ``commands``: the ``mdm-exact train`` and ``mdm-exact evaluate`` subcommands.

Importing this package needs torch (``pip install 'mdm_exact[torch]'``); ``import mdm_exact``
never imports it.
"""

try:
    import torch  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "mdm_exact.nn needs PyTorch, which is not installed: pip install 'mdm_exact[torch]'",
        name="torch",
    ) from err

from .evaluate import (
    RESULTS_FILE,
    RESULTS_FORMAT,
    Evaluation,
    LearningError,
    PolicyRow,
    ScheduleRow,
    autoregressive_kl,
    evaluate,
    evaluate_run,
    learning_error,
    policy_kl,
    results_data,
    write_results,
)
from .model import KINDS, ModelConfig, Transformer, resolve_device
from .sample import (
    CachedDenoiser,
    Generation,
    TorchDenoiser,
    autoregressive,
    ddpm,
    ddpm_cache,
    fixed_count,
)
from .train import TrainConfig, TrainResult, load_model, train

__all__ = [
    "KINDS",
    "RESULTS_FILE",
    "RESULTS_FORMAT",
    "CachedDenoiser",
    "Evaluation",
    "Generation",
    "LearningError",
    "ModelConfig",
    "PolicyRow",
    "ScheduleRow",
    "TorchDenoiser",
    "TrainConfig",
    "TrainResult",
    "Transformer",
    "autoregressive",
    "autoregressive_kl",
    "ddpm",
    "ddpm_cache",
    "evaluate",
    "evaluate_run",
    "fixed_count",
    "learning_error",
    "load_model",
    "policy_kl",
    "resolve_device",
    "results_data",
    "train",
    "write_results",
]
