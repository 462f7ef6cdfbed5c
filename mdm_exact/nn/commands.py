"""The ``mdm-exact train`` and ``mdm-exact evaluate`` subcommands (wired by ``mdm_exact.cli``).

``add_*_arguments(parser)`` fills an ``argparse`` parser; ``run_*(args)`` runs it and returns the
exit status. Bad inputs raise a one-line ``MdmExactError`` (checked before any work: paths, the
device, sizes) for the CLI to print.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._io import input_file, output_dir, print_json
from .._utils import check_positive_int
from ..errors import ArgumentError
from ..languages import PRESETS, load_language, preset
from ..policies import parse_policy
from .evaluate import RESULTS_FILE, columns_legend, evaluate_run
from .model import KINDS, ModelConfig, resolve_device
from .train import LOSS_WEIGHTS, TrainConfig, train

DEFAULT_STEPS = "8,16,32,64"

DEFAULT_TRAIN_STEPS = {"mdm": TrainConfig.steps, "ar": 10_000}
"""Optimizer steps of the recipe per kind (docs/nn_results.md): the AR model sees every position
as a target at every step and needs fewer."""


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mdm-exact train``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help=f"a Table 1 language: {', '.join(sorted(PRESETS))}")
    source.add_argument("--language", metavar="FILE",
                        help="a language file written by save_language (.json or .npz)")
    parser.add_argument("--length", type=int, default=64,
                        help="sequence length L, also the model's context (default 64)")
    parser.add_argument("--kind", choices=KINDS, default="mdm",
                        help="mdm: masked diffusion denoiser; ar: autoregressive baseline")
    parser.add_argument("--train-steps", type=int, default=None, metavar="N",
                        help=f"optimizer steps (default {DEFAULT_TRAIN_STEPS['mdm']:,} for an "
                             f"MDM, {DEFAULT_TRAIN_STEPS['ar']:,} for AR)")
    parser.add_argument("--steps", type=int, default=None, metavar="N",
                        help="deprecated alias of --train-steps, removed in the next release")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="run directory (created; an existing run of this kind resumes)")
    parser.add_argument("--seed", type=int, default=0, help="data, masks and init seed")
    parser.add_argument("--width", type=int, default=ModelConfig.width,
                        help=f"model width (default {ModelConfig.width})")
    parser.add_argument("--depth", type=int, default=ModelConfig.depth,
                        help=f"transformer blocks (default {ModelConfig.depth})")
    parser.add_argument("--heads", type=int, default=ModelConfig.heads,
                        help=f"attention heads (default {ModelConfig.heads})")
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size,
                        help=f"sequences per step (default {TrainConfig.batch_size})")
    parser.add_argument("--lr", type=float, default=TrainConfig.lr,
                        help=f"peak learning rate (default {TrainConfig.lr:g}; 10%% warmup, "
                             "cosine decay to 0)")
    parser.add_argument("--loss-weight", choices=LOSS_WEIGHTS, default=TrainConfig.loss_weight,
                        help="MDM loss: flat = mean cross-entropy over the masked positions, "
                             "elbo = the 1/t-weighted negative ELBO (default "
                             f"{TrainConfig.loss_weight})")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")


def _train_steps(args: argparse.Namespace) -> int:
    """``--train-steps``, or the value of its deprecated alias ``--steps`` with a warning."""
    if args.steps is None:
        return (DEFAULT_TRAIN_STEPS[args.kind] if args.train_steps is None
                else args.train_steps)
    if args.train_steps is not None:
        raise ArgumentError(f"give --train-steps only, not also its deprecated alias --steps "
                            f"(got --train-steps {args.train_steps} and --steps {args.steps})")
    print(f"mdm-exact: warning: train --steps is deprecated, use --train-steps {args.steps}",
          file=sys.stderr, flush=True)
    return args.steps


def run_train(args: argparse.Namespace) -> int:
    """Train (or resume) and print where the run went."""
    steps = _train_steps(args)
    threads = None if args.threads is None else check_positive_int("--threads", args.threads)
    out = output_dir("--out", args.out)
    device = resolve_device(args.device)
    language = (preset(args.preset) if args.preset is not None
                else load_language(input_file("--language", args.language)))
    model_config = ModelConfig(args.kind, language.vocab_size, args.length, width=args.width,
                               depth=args.depth, heads=args.heads)
    train_config = TrainConfig(args.length, steps=steps, batch_size=args.batch_size,
                               lr=args.lr, seed=args.seed, loss_weight=args.loss_weight)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    result = train(language, model_config, train_config, out, device=device)
    tail = result.losses[-min(100, result.losses.size):]
    entropy_rate = language.entropy(args.length).value / args.length
    if args.kind == "mdm" and args.loss_weight == "flat":
        what = (f"masked cross-entropy {tail.mean():.4f} nats per masked token over the last "
                f"{tail.size} steps (mdm-exact evaluate measures the learning error)")
    else:
        what = (f"loss {tail.mean():.4f} nats/token over the last {tail.size} steps "
                f"(H(q)/L = {entropy_rate:.4f})")
    print(f"trained {args.kind} ({result.model.num_parameters():,} parameters) for "
          f"{result.step} steps into {args.out}: {what}")
    return 0


def _steps_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ArgumentError(f"--steps must be a comma-separated list of integers, got {text!r}"
                         ) from None
    if not values or min(values) < 1:
        raise ArgumentError(f"--steps must list positive integers, got {text!r}")
    return values


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mdm-exact evaluate``; its ``--help`` ends with the legend of the table."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "columns of the table:\n" + columns_legend(79)
    parser.add_argument("run", metavar="RUN_DIR", help="a directory written by mdm-exact train")
    parser.add_argument("--steps", default=DEFAULT_STEPS,
                        help=f"sampling steps N, comma-separated (default {DEFAULT_STEPS})")
    parser.add_argument("--samples", type=int, default=1000, help="samples per row")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--schedule", default="linear",
                        help="linear, cosine, loglinear[:EPS] or polynomial:A (default linear)")
    parser.add_argument("--length", type=int, default=None,
                        help="sequence length (default: the trained length)")
    parser.add_argument("--ar", metavar="DIR", default=None,
                        help="run directory of an autoregressive baseline (default: RUN_DIR's, "
                             "if it holds one)")
    parser.add_argument("--policy", action="append", default=None, metavar="SPEC",
                        help="also sample the MDM and the Oracle under an adaptive policy "
                             "(repeatable): topk-confidence:N, topk-margin:N, topk-entropy:N, "
                             "random-topk:N, threshold:TAU, eb:GAMMA or factor:F; a "
                             "deterministic one also reports each model's exact KL(q || p)")
    parser.add_argument("--block-length", type=int, default=None, metavar="B",
                        help="with --policy: semi-autoregressive blocks of B positions")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-save", action="store_true",
                        help=f"do not write RUN_DIR/{RESULTS_FILE} (written by default: the "
                             "report with the checkpoints' hashes and the wall time)")


def _policies(args: argparse.Namespace) -> list:
    """The ``--policy`` rules with ``--block-length`` (refused without ``--policy``)."""
    if args.policy is None:
        if args.block_length is not None:
            raise ArgumentError(f"--block-length applies only with --policy, got "
                                f"--block-length {args.block_length}")
        return []
    if args.block_length is not None and args.block_length < 1:
        raise ArgumentError(f"--block-length must be positive, got {args.block_length}")
    return [parse_policy(spec, args.block_length) for spec in args.policy]


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a run, write its results JSON (unless ``--no-save``), print the table (or
    JSON)."""
    steps = _steps_list(args.steps)
    policies = _policies(args)
    device = resolve_device(args.device)
    report = evaluate_run(args.run, steps, args.samples, seed=args.seed, ar_dir=args.ar,
                          length=args.length, schedule=args.schedule, policies=policies,
                          device=device, save=not args.no_save, progress=True)
    if args.json:
        print_json(report.as_dict())
    else:
        print(report.format())
        if not args.no_save:
            print(f"\nwrote {Path(args.run) / RESULTS_FILE}")
    return 0
