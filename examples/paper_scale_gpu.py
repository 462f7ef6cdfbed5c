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
# # The paper-scale run on a GPU (run by hand)
#
# The Table 1 languages (2-gram, 3-gram, 4-gram, HMM) at L = 512: per language a GPT-2-small
# sized MDM and AR baseline are trained (bf16 autocast on CUDA, checkpoints every 500 steps), then
# `evaluate` scores the MDM beside the Oracle at N = 8, 16, ..., 512 (same reveal steps, same
# seeds) and the AR model, writing `OUT/LANGUAGE/results.json`, the file that
# `mdm-exact figure learned --run OUT/LANGUAGE` and `docs/make_nn_results.py` read.
#
# ```
# python examples/paper_scale_gpu.py --out runs/paper            # hours on one GPU
# python examples/paper_scale_gpu.py --dry-run                   # the plan and its time, no GPU
# python examples/paper_scale_gpu.py --smoke --out runs/smoke    # minutes: checks a GPU setup
# ```
#
# Training is MDLM's: the 1/t-weighted ELBO and peak lr 3e-4 for a GPT-2-small model. The CPU
# recipe of `mdm-exact train` (flat loss, lr 1e-3, width 64; docs/nn_results.md) was measured only
# on small models, so it is not carried over to this scale unmeasured.
#
# Resume: rerun the same command. Training resumes from each run's last checkpoint exactly as an
# uninterrupted run would (`mdm_exact.nn.train`), and a language whose `results.json` already
# exists is not evaluated again (delete it to re-evaluate).
#
# Expected run time: an estimate, not a measurement. Training costs about
# 6 P T + 12 D L W T floating-point operations per step (P parameters, T = batch x L tokens,
# D blocks of width W: the weights' forward and backward pass plus attention), evaluated at a
# stated sustained bf16 throughput (`--tflops`, default 250 TFLOP/s, about a quarter of an H100's
# or H200's dense bf16 peak, what a small model without fused kernels sustains). Sampling costs
# 2 P L (+ attention) per sequence and network call, with E[NFE] calls per N. The exact Oracle
# runs on the CPU (numba) and is not counted. `--dry-run` prints the estimate for the options
# given; the defaults come to about 3 hours. Under `MDM_EXACT_QUICK=1` (tests/test_examples.py)
# the script only prints the plan.

# %%
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LANGUAGES = ("2-gram", "3-gram", "4-gram", "hmm")
"""Table 1 (``mdm_exact.preset`` names)."""

DEFAULT_TFLOPS = 250.0
"""Stated sustained bf16 throughput (TFLOP/s) of the run-time estimate."""


@dataclass(frozen=True)
class Plan:
    """Everything the run does: sizes of the models, the training and the evaluation."""

    languages: tuple[str, ...]
    length: int
    steps: tuple[int, ...]
    width: int
    depth: int
    heads: int
    train_steps: int
    ar_train_steps: int
    batch_size: int
    lr: float
    samples: int
    seed: int


PAPER = Plan(LANGUAGES, 512, (8, 16, 32, 64, 128, 256, 512), width=768, depth=12, heads=12,
             train_steps=20_000, ar_train_steps=10_000, batch_size=64, lr=3e-4, samples=1000,
             seed=0)
SMOKE = Plan(("2-gram",), 64, (8, 16, 32, 64), width=128, depth=2, heads=4, train_steps=300,
             ar_train_steps=200, batch_size=64, lr=1e-3, samples=200, seed=0)


def parameters(plan: Plan, vocab_size: int) -> int:
    """Parameters of the transformer (built on the meta device: no memory, no time)."""
    import torch

    from mdm_exact.nn import ModelConfig, Transformer

    with torch.device("meta"):
        model = Transformer(ModelConfig("mdm", vocab_size, plan.length, width=plan.width,
                                        depth=plan.depth, heads=plan.heads))
    return model.num_parameters()


def expected_seconds(plan: Plan, vocab_size: int, tflops: float) -> dict[str, float]:
    """Seconds of GPU work per language at ``tflops``: training (MDM + AR) and sampling."""
    from mdm_exact import Schedule

    p, length, w, d = parameters(plan, vocab_size), plan.length, plan.width, plan.depth
    per_token = 6.0 * p + 12.0 * d * length * w
    tokens = plan.batch_size * length
    train = (plan.train_steps + plan.ar_train_steps) * per_token * tokens
    calls = sum(Schedule.linear(n).expected_nfe(length) for n in plan.steps) + length
    sample = plan.samples * calls * length * (2.0 * p + 4.0 * d * length * w)
    rate = tflops * 1e12
    return {"train": train / rate, "sample": sample / rate}


def describe(plan: Plan, tflops: float) -> str:
    from mdm_exact import preset

    lines = [f"languages {', '.join(plan.languages)} (Table 1); L = {plan.length}; N = "
             f"{', '.join(map(str, plan.steps))}; {plan.samples} samples per row, seed "
             f"{plan.seed}",
             f"models: width {plan.width}, depth {plan.depth}, heads {plan.heads}; MDM "
             f"{plan.train_steps} steps, AR {plan.ar_train_steps} steps, batch "
             f"{plan.batch_size}, peak lr {plan.lr}, bf16 autocast on CUDA"]
    total = 0.0
    for name in plan.languages:
        vocab = preset(name).vocab_size
        secs = expected_seconds(plan, vocab, tflops)
        total += sum(secs.values())
        lines.append(f"  {name}: {parameters(plan, vocab):,} parameters; training "
                     f"{secs['train'] / 60:.0f} min, sampling {secs['sample'] / 60:.1f} min")
    lines.append(f"expected run time: about {total / 3600:.1f} h of GPU work at a sustained "
                 f"{tflops:g} TFLOP/s (an estimate from the FLOPs, not a measurement; the CPU "
                 "Oracle adds to it)")
    return "\n".join(lines)


def run(plan: Plan, out: Path, device: str) -> None:
    from mdm_exact import preset
    from mdm_exact.nn import ModelConfig, TrainConfig, evaluate_run, train
    from mdm_exact.plotting import figure_learned

    for name in plan.languages:
        language = preset(name)
        run_dir = out / name
        for kind, steps in (("mdm", plan.train_steps), ("ar", plan.ar_train_steps)):
            start = time.perf_counter()
            result = train(language, ModelConfig(kind, language.vocab_size, plan.length,
                                                 width=plan.width, depth=plan.depth,
                                                 heads=plan.heads),
                           TrainConfig(plan.length, steps=steps, batch_size=plan.batch_size,
                                       lr=plan.lr, seed=plan.seed, loss_weight="elbo"),
                           run_dir, device=device)
            print(f"{name} {kind}: step {result.step}, last loss {result.losses[-1]:.4f}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        if (run_dir / "results.json").exists():
            print(f"{name}: {run_dir / 'results.json'} exists, not evaluated again", flush=True)
        else:
            evaluate_run(run_dir, plan.steps, plan.samples, seed=plan.seed, device=device,
                         progress=True)
        figure_learned([run_dir]).savefig(run_dir / "learned.png", dpi=150)
        print(f"{name}: wrote {run_dir / 'results.json'} and {run_dir / 'learned.png'}",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The paper-scale learned-vs-oracle run "
                                                 "(Table 1 languages, L = 512) on a GPU.")
    parser.add_argument("--out", type=Path, default=Path("runs/paper"),
                        help="folder of the run directories, one per language (default "
                             "runs/paper)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and the expected run time, touch nothing")
    parser.add_argument("--smoke", action="store_true",
                        help="a few-minute version (2-gram, L = 64) to check a GPU setup")
    parser.add_argument("--tflops", type=float, default=DEFAULT_TFLOPS,
                        help=f"sustained bf16 TFLOP/s of the estimate (default "
                             f"{DEFAULT_TFLOPS:g})")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else PAPER
    if not args.tflops > 0:
        parser.error(f"--tflops must be positive, got {args.tflops}")
    print(describe(plan, args.tflops), flush=True)
    if args.dry_run or os.environ.get("MDM_EXACT_QUICK") == "1":
        return 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: this script is for a GPU (--dry-run prints the plan)")
    # The activations live on the GPU: budget them against its memory, not the host default.
    os.environ.setdefault("MDM_EXACT_MAX_MEMORY", "128GiB")
    torch.backends.cuda.matmul.allow_tf32 = True
    run(plan, args.out, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
