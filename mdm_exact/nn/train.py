"""Training on an endless seeded stream from any language, with resumable checkpoints.

Objectives (nats per token):

- MDM, ``loss_weight="flat"`` (the default): the cross-entropy -log p_theta(x_i | x_t) averaged
  over the batch's masked positions, each position masked with probability t and
  t_i = t_min + (1 - t_min) ((u + i / B) mod 1) antithetic over the batch;
- MDM, ``loss_weight="elbo"``: the MDLM continuous-time negative ELBO for the linear schedule
  alpha_t = 1 - t, E_t E_{x_t} [ -alpha'_t / (1 - alpha_t) * sum_{i masked}
  -log p_theta(x_i | x_t) ] / L with weight -alpha'_t / (1 - alpha_t) = 1 / t;
- AR: next-token cross-entropy.

Both MDM losses are minimised by the true posterior q(x_i | x_t) at every t; the flat one has the
lower-variance gradient (no 1/t factor up to 1 / t_min), and it reached the learning-error targets
sooner in the recipe search of docs/nn_results.md, which is where the defaults come from: width
64, depth 2, 4 heads (``ModelConfig``), batch 64, peak lr 1e-3, 14,000 steps (10,000 for AR in
the CLI). The rest is MDLM's: AdamW (betas (0.9, 0.999), no weight decay), linear warmup over
the first 10% of the steps then cosine decay to 0, gradient clipping at norm 1.0, bf16 autocast
on CUDA only. The batch and the masks are drawn with one ``numpy`` generator seeded by ``seed``;
initial weights come from ``torch`` seeded by ``seed`` inside ``fork_rng`` (the global torch
state is left alone).

A run directory holds ``language.json`` and, per kind (``mdm`` or ``ar``): ``{kind}.json`` (the
model and training configs, the step reached), ``{kind}.pt`` (the model ``state_dict``) and
``{kind}.resume.pt`` (weights, optimizer, step, generator state and losses). Calling ``train``
again on the same directory resumes and continues exactly as an uninterrupted run would.

Every file is written to a uniquely named temporary file and moved into place with
``os.replace``; a checkpoint's files are written with Ctrl-C held back, so ``{kind}.pt`` never
lags ``{kind}.resume.pt``. While ``train`` runs it holds the lock file ``.lock`` (with its pid) in
the run directory: a second ``train`` on the same directory is refused, and a lock left by a
process that no longer exists is taken over.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._io import deferred_interrupt, directory_lock, read_json_object, write_atomic
from .._utils import check_memory, check_positive_int, progress_bar
from ..errors import ArgumentError, MissingFileError
from ..languages import Language, check_language, load_language
from .model import ModelConfig, Transformer, model_inputs, resolve_device

LANGUAGE_FILE = "language.json"
CHECKPOINT_EVERY = 500
FORMAT_VERSION = 1


LOSS_WEIGHTS = ("elbo", "flat")
"""MDM loss weightings: ``elbo`` weighs each masked position by 1/t (the negative ELBO, per
token); ``flat`` averages the cross-entropy over the batch's masked positions (weight 1). Both
are minimised by the true posterior q(x_i | x_t); they differ in the variance of the gradient."""

_RANGES = {"lr": "lr > 0", "warmup_fraction": "0 <= warmup_fraction <= 1",
           "weight_decay": "weight_decay >= 0", "grad_clip": "grad_clip > 0",
           "t_min": "0 < t_min < 1"}


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; ``steps`` is the total number of optimizer steps of the run.
    The defaults are the CPU recipe (module doc; docs/nn_results.md)."""

    length: int
    steps: int = 14000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_fraction: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    t_min: float = 1e-3
    seed: int = 0
    loss_weight: str = "flat"

    def __post_init__(self):
        check_positive_int("length", self.length)
        check_positive_int("steps", self.steps)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("seed", self.seed, 0)
        if self.loss_weight not in LOSS_WEIGHTS:
            raise ArgumentError(f"loss_weight must be one of {LOSS_WEIGHTS}, got "
                                f"{self.loss_weight!r}")
        checks = (
            ("lr", self.lr > 0),
            ("warmup_fraction", 0 <= self.warmup_fraction <= 1),
            ("weight_decay", self.weight_decay >= 0),
            ("grad_clip", self.grad_clip > 0),
            ("t_min", 0 < self.t_min < 1),
        )
        for name, ok in checks:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and ok):
                raise ArgumentError(f"{name} must be a finite number with {_RANGES[name]}, "
                                 f"got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready training settings."""
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """``losses``: (step,) training loss of every step so far (nats per token); ``steps``: the
    run's total; ``out``: the run directory."""

    model: Transformer
    losses: np.ndarray
    step: int
    steps: int
    out: Path

    @property
    def complete(self) -> bool:
        """Whether training reached its final step."""
        return self.step >= self.steps


def cosine_lr(step: int, total: int, peak: float, warmup_fraction: float) -> float:
    """Linear warmup over ``round(warmup_fraction * total)`` steps, then cosine decay to 0."""
    warmup = max(1, round(warmup_fraction * total))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def antithetic_times(u: float, batch: int, t_min: float) -> np.ndarray:
    """(batch,) t_i = t_min + (1 - t_min) ((u + i / batch) mod 1): one t per stratum."""
    return t_min + (1.0 - t_min) * ((u + np.arange(batch) / batch) % 1.0)


def draw_batch(language: Language, config: TrainConfig, kind: str, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, mask, t)``: x (B, L) ~ q; for an MDM, mask (B, L) with P(masked) = t (B,)."""
    x = language.sample(config.batch_size, config.length, rng)
    if kind == "ar":
        return x, np.zeros_like(x, dtype=bool), np.ones(config.batch_size)
    t = antithetic_times(rng.random(), config.batch_size, config.t_min)
    return x, rng.random(x.shape) < t[:, None], t


def batch_loss(model: Transformer, x: torch.Tensor, mask: torch.Tensor, t: torch.Tensor,
               loss_weight: str = TrainConfig.loss_weight) -> torch.Tensor:
    """MDM: the masked cross-entropy weighted by ``loss_weight`` (``elbo``: 1/t per masked
    position, summed and divided by the batch's tokens, the negative ELBO per token; ``flat``:
    the mean over the masked positions); AR: next-token cross-entropy per token. Logits are taken
    to float32 before the loss."""
    config = model.config
    if config.kind == "ar":
        logits = model(model_inputs(config, x)).float()
        return F.cross_entropy(logits.transpose(1, 2), x)
    ids = torch.where(mask, torch.full_like(x, config.special_id), x)
    ce = F.cross_entropy(model(ids).float().transpose(1, 2), x, reduction="none")
    if loss_weight == "flat":
        return (ce * mask).sum() / mask.sum().clamp(min=1)
    return (ce * mask / t[:, None]).sum() / x.numel()


def _build(config: ModelConfig, seed: int) -> Transformer:
    """A freshly initialised model from ``seed``, leaving the global torch generator alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Transformer(config)


def _json_roundtrip(data: dict) -> dict:
    return json.loads(json.dumps(data))


def training_bytes(model_config: ModelConfig, train_config: TrainConfig) -> float:
    """Estimated peak memory of ``train`` in bytes: float32 weights, gradients and the two AdamW
    moments; the rotary tables of ``max_length`` positions; per block the activations kept for
    the backward pass (about 24 floats per token and width unit) and the attention matrix
    (batch, heads, length, length); the batch itself."""
    w, v, d = model_config.width, model_config.vocab_size, model_config.depth
    params = d * (4 * w * w + 2 * model_config.mlp_ratio * w * w + 9 * w) + (2 * v + 1) * w
    rotary = model_config.max_length * (w // model_config.heads) * 12.0
    tokens = float(train_config.batch_size) * train_config.length
    activations = d * tokens * (24.0 * w + 2.0 * model_config.heads * train_config.length) * 4
    return 16.0 * params + rotary + activations + tokens * (8.0 * v + 32.0)


def _check_run_dir(out: Path, language: Language, kind: str, header: dict) -> bool:
    """Write or compare ``language.json`` and ``{kind}.json`` (the configs, written before the
    first step); True when a checkpoint to resume from exists."""
    lang_path = out / LANGUAGE_FILE
    wanted = _json_roundtrip(language.to_dict())
    if lang_path.exists():
        if read_json_object(lang_path, "the run's language file") != wanted:
            raise ArgumentError(f"{str(out)!r} already holds a run on a different language; "
                             "use a new output directory")
    else:
        write_atomic(lang_path, lambda p: language.save(p))
    config_path = out / f"{kind}.json"
    if not config_path.exists():
        write_atomic(config_path, lambda p: p.write_text(json.dumps(header, indent=2)))
        return False
    old = read_json_object(config_path, "the run's config file")
    for key in ("model", "train"):
        recorded = old.get(key)
        if key == "train" and isinstance(recorded, dict):
            recorded = {"loss_weight": "elbo", **recorded}  # runs written before the option
        if recorded != header[key]:
            raise ArgumentError(
                f"{str(out)!r} already holds a {kind} run with a different {key} config "
                f"({recorded} != {header[key]}); use a new output directory"
            )
    return (out / f"{kind}.resume.pt").exists()


def _save(out: Path, model: Transformer, optimizer, step: int, rng: np.random.Generator,
          losses: list[float], header: dict) -> None:
    kind = model.config.kind
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    state = {
        "model": weights,
        "optimizer": optimizer.state_dict(),
        "step": step,
        "rng": json.dumps(rng.bit_generator.state),
        "losses": torch.tensor(losses, dtype=torch.float64),
    }
    info = dict(header, step=step, final_loss=losses[-1] if losses else None)
    with deferred_interrupt():
        write_atomic(out / f"{kind}.resume.pt", lambda p: torch.save(state, p))
        write_atomic(out / f"{kind}.pt", lambda p: torch.save(weights, p))
        write_atomic(out / f"{kind}.json", lambda p: p.write_text(json.dumps(info, indent=2)))


def _load_checkpoint(path: Path, device: torch.device):
    """``torch.load(path, weights_only=True)``, refusing an empty, truncated or foreign file
    with one line (torch reports these with several exception types, and warns on some first:
    the warnings are shown only when the file loads)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as err:  # any failure to parse the file means a bad file
            sentence = str(err).strip().split("\n")[0].split(". ")[0][:120]
            detail = f"{type(err).__name__}: {sentence}" if sentence else type(err).__name__
            raise ArgumentError(f"{str(path)!r} is not a readable checkpoint ({detail})"
                                ) from None
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return state


def _load_weights(model: Transformer, weights, path: Path) -> None:
    """``model.load_state_dict(weights)``, refusing weights of another shape (e.g. width)."""
    if not isinstance(weights, dict):
        raise ArgumentError(f"{str(path)!r} does not hold model weights")
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        text = " ".join(str(err).split())
        start = max(text.find("size mismatch"), text.find("Missing key"), 0)
        detail = text[start:].split(". ")[0][:240]
        raise ArgumentError(f"{str(path)!r} does not fit the model config of its run (another "
                            f"width, depth or vocabulary?): {detail}") from None


def train(
    language: Language,
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: str | Path,
    *,
    device: str | torch.device | None = "auto",
    progress: bool = True,
    checkpoint_every: int = CHECKPOINT_EVERY,
    stop_after: int | None = None,
) -> TrainResult:
    """Train (or resume) a ``model_config.kind`` model on samples of ``language`` into ``out``.

    ``stop_after``: return after that many total steps (checkpointed), e.g. to share a machine
    in time slices; a later call continues. The model is returned in eval mode on ``device``.
    """
    check_language(language)
    if model_config.vocab_size != language.vocab_size:
        raise ArgumentError(f"model_config.vocab_size must equal the language's "
                         f"{language.vocab_size}, got {model_config.vocab_size}")
    if train_config.length > model_config.max_length:
        raise ArgumentError(f"length must be <= the model's max_length {model_config.max_length}, "
                         f"got {train_config.length}")
    language._check_length(train_config.length)
    checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
    end = train_config.steps if stop_after is None else min(
        train_config.steps, check_positive_int("stop_after", stop_after))
    check_memory(f"training (length={train_config.length}, batch_size="
                 f"{train_config.batch_size}, width={model_config.width})",
                 training_bytes(model_config, train_config), argument="length or batch_size")
    dev = resolve_device(device)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArgumentError(f"out {str(out)!r} is a file, not a run directory")
    out.mkdir(parents=True, exist_ok=True)
    with directory_lock(out, "out"):
        for stale in out.glob(".tmp-*"):
            stale.unlink(missing_ok=True)  # left by a killed run; the lock says none is writing
        return _train_locked(language, model_config, train_config, out, dev, progress,
                             checkpoint_every, end)


def _train_locked(language: Language, model_config: ModelConfig, train_config: TrainConfig,
                  out: Path, dev: torch.device, progress: bool, checkpoint_every: int, end: int
                  ) -> TrainResult:
    kind = model_config.kind
    header = {"format": FORMAT_VERSION, "kind": kind, "language": LANGUAGE_FILE,
              "model": _json_roundtrip(model_config.to_dict()),
              "train": _json_roundtrip(train_config.to_dict())}
    resume = _check_run_dir(out, language, kind, header)

    model = _build(model_config, train_config.seed).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_config.lr,
                                  weight_decay=train_config.weight_decay)
    rng = np.random.default_rng(train_config.seed)
    step, losses = 0, []
    if resume:
        path = out / f"{kind}.resume.pt"
        state = _load_checkpoint(path, dev)
        if not isinstance(state, dict) or set(state) != {"model", "optimizer", "step", "rng",
                                                          "losses"}:
            raise ArgumentError(f"{str(path)!r} is not a resume checkpoint of mdm_exact")
        _load_weights(model, state["model"], path)
        try:
            optimizer.load_state_dict(state["optimizer"])
            rng.bit_generator.state = json.loads(state["rng"])
            step, losses = int(state["step"]), state["losses"].tolist()
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise ArgumentError(f"{str(path)!r} holds a damaged training state "
                                f"({type(err).__name__}: {str(err)[:120]})") from None

    model.train()
    bar = progress_bar(progress, total=train_config.steps, initial=step, desc=f"train {kind}")
    try:
        while step < end:
            x, mask, t = draw_batch(language, train_config, kind, rng)
            lr = cosine_lr(step, train_config.steps, train_config.lr,
                           train_config.warmup_fraction)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16,
                                enabled=dev.type == "cuda"):
                loss = batch_loss(model, torch.from_numpy(x).to(dev),
                                  torch.from_numpy(mask).to(dev),
                                  torch.from_numpy(t).float().to(dev),
                                  train_config.loss_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
            optimizer.step()
            losses.append(float(loss.item()))
            step += 1
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", lr=f"{lr:.2e}", refresh=False)
            if step % checkpoint_every == 0 or step == end:
                _save(out, model, optimizer, step, rng, losses, header)
    finally:
        bar.close()
    model.eval()
    return TrainResult(model, np.asarray(losses), step, train_config.steps, out)


def load_model(run_dir: str | Path, kind: str = "mdm", device: str | torch.device | None = "auto"
               ) -> tuple[Transformer, Language]:
    """The trained ``kind`` model of ``run_dir`` (eval mode, on ``device``) and its language.

    Weights are read with ``torch.load(..., weights_only=True)``; the language from
    ``language.json``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingFileError(f"no run directory at {str(run_dir)!r}")
    config_path, weights_path = run_dir / f"{kind}.json", run_dir / f"{kind}.pt"
    for path in (config_path, weights_path, run_dir / LANGUAGE_FILE):
        if not path.exists():
            raise MissingFileError(f"{str(run_dir)!r} has no {path.name} (no trained {kind} "
                                    "model there)")
    info = read_json_object(config_path, "the run's config file")
    if "model" not in info:
        raise ArgumentError(f"{str(config_path)!r} has no model config")
    config = ModelConfig.from_dict(info["model"])
    dev = resolve_device(device)
    model = _build(config, 0)
    _load_weights(model, _load_checkpoint(weights_path, dev), weights_path)
    model.to(dev).eval()
    return model, load_language(run_dir / LANGUAGE_FILE)
