"""Transformers: the MDLM-style masked denoiser and the autoregressive baseline.

Both are pre-norm transformers with rotary positions and the same width and depth; they differ
only in the attention mask (bidirectional vs causal) and in what they read:

- ``kind="mdm"``: input ids (batch, length) over V + 1 tokens, the mask being id V (``MASK = -1``
  is converted at the boundary); no time conditioning (as MDLM: the number of masks tells the
  network the noise level). Output logits (batch, length, V): the SUBS parameterization, in
  which the mask token has no output and so probability zero; carrying revealed tokens over
  unchanged is done where probabilities are formed (``sample.TorchDenoiser``) and, in the
  loss, by scoring masked positions only.
- ``kind="ar"``: input ids are the sequence shifted right behind a begin-of-sequence id V; the
  logits at position j are p(x_j | x_<j).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._utils import check_positive_int
from ..errors import ArgumentError, ArgumentTypeError

KINDS = ("mdm", "ar")
"""``mdm``: masked diffusion denoiser; ``ar``: autoregressive (causal) baseline."""

ROTARY_BASE = 10000.0
INIT_STD = 0.02
"""GPT-2 initialisation of every weight matrix and embedding."""


@dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of a ``Transformer``.

    ``max_length`` is the context the model was trained for; inputs longer than it are refused.
    ``width`` must be a multiple of ``heads`` with an even head dimension (rotary pairs). The
    defaults (width 64, depth 2, 4 heads: about 101,000 parameters at V = 8) are the CPU recipe's
    (docs/nn_results.md).
    """

    kind: str
    vocab_size: int
    max_length: int
    width: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 4

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ArgumentError(f"kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("vocab_size", "max_length", "width", "depth", "heads", "mlp_ratio"):
            check_positive_int(name, getattr(self, name))
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ArgumentError(
                f"width must be a multiple of heads with an even head dimension, got "
                f"width={self.width}, heads={self.heads}"
            )

    @property
    def special_id(self) -> int:
        """Id V: the mask token of an MDM, the begin-of-sequence token of an AR model."""
        return self.vocab_size

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready hyperparameters (stored beside the checkpoint)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``."""
        if not isinstance(data, dict):
            raise ArgumentError(f"a model config must be a mapping, got {type(data).__name__}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ArgumentError(f"unknown model config key(s) {sorted(unknown)}")
        return cls(**data)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): CUDA when available, else CPU; ``"cuda"`` refuses without a GPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str | torch.device):
        raise ArgumentTypeError(f"device must be a string or torch.device, got {device!r}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ArgumentError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ArgumentError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError(f"device {device!r} was requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ArgumentError(f"device {device!r}: there are only {torch.cuda.device_count()} CUDA "
                            "devices")
    return dev


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class _Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        w = config.width
        self.heads = config.heads
        self.causal = config.kind == "ar"
        self.norm1 = nn.LayerNorm(w)
        self.qkv = nn.Linear(w, 3 * w)
        self.proj = nn.Linear(w, w)
        self.norm2 = nn.LayerNorm(w)
        self.mlp = nn.Sequential(
            nn.Linear(w, config.mlp_ratio * w), nn.GELU(), nn.Linear(config.mlp_ratio * w, w)
        )

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, w // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, length, head_dim)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        x = x + self.proj(att.transpose(1, 2).reshape(b, n, w))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """``ids`` (batch, length) in [0, V] -> logits (batch, length, V) (see the module doc)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size + 1, config.width)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.vocab_size)
        half = config.width // config.heads // 2
        inv_freq = ROTARY_BASE ** (-torch.arange(half, dtype=torch.float64) / half)
        angles = torch.arange(config.max_length, dtype=torch.float64)[:, None] * inv_freq
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=INIT_STD)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (batch, length, V) for token ids (batch, length), mask id V."""
        n = ids.shape[1]
        if n > self.config.max_length:
            raise ArgumentError(
                f"length must be <= the model's max_length {self.config.max_length}, got {n}"
            )
        cos, sin = self.cos[:n], self.sin[:n]
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head(self.norm(x))

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())


def model_inputs(config: ModelConfig, x: torch.Tensor) -> torch.Tensor:
    """Network ids from tokens ``x`` (batch, length) with ``MASK = -1``.

    MDM: a masked position becomes the mask id V. AR: the sequence shifted right behind the
    begin-of-sequence id V (masked positions, which must come after every revealed one, become
    V too; position j only reads ids 0..j, i.e. x_<j).
    """
    ids = torch.where(x < 0, torch.full_like(x, config.special_id), x)
    if config.kind == "ar":
        bos = torch.full_like(ids[:, :1], config.special_id)
        ids = torch.cat((bos, ids[:, :-1]), dim=1)
    return ids

