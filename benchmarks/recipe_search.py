"""One training experiment of the CPU recipe search, with its learning curve (run by hand).

``python benchmarks/recipe_search.py NAME --preset 2-gram --length 64 --kind mdm [settings]``
trains one model with ``mdm_exact.nn.train`` (in slices of ``--eval-every`` optimizer steps
through ``stop_after``, which resumes bit for bit) and, after each slice, measures it against
the exact language:

- MDM: the learning error of Assumption 4.1, KL(q(x_i | x_t) || p_theta(x_i | x_t)) over the
  masked positions of 256 x ~ q at each t in (0.1, 0.3, 0.5, 0.7, 0.9) (``nn.learning_error``,
  the same draws at every slice): mean and 95th percentile;
- AR: KL(q || p_AR) / L, the cross-entropy minus H(q)/L (``nn.autoregressive_kl`` on the same
  1024 x ~ q at every slice).

It writes ``docs/_static/nn/recipe/NAME.json`` (settings, machine, torch threads, load average,
the curve with the training wall time at each point; measuring time is excluded from the wall
time) after every slice, so a killed run keeps its curve. ``docs/make_nn_results.py`` renders
every experiment of that folder as the table and figure of ``docs/nn_results.md``. The run's
checkpoints go to ``--runs`` (default ``runs/recipe``), not to the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import _common
import numpy as np
import torch

from mdm_exact import preset
from mdm_exact.nn import ModelConfig, TorchDenoiser, TrainConfig, learning_error, train
from mdm_exact.nn.evaluate import autoregressive_kl
from mdm_exact.nn.train import LOSS_WEIGHTS

OUT = _common.ROOT / "docs" / "_static" / "nn" / "recipe"
FORMAT = "mdm_exact.nn.recipe/1"


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", help="experiment name (the JSON's file name)")
    parser.add_argument("--preset", default="2-gram")
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--kind", choices=("mdm", "ar"), default="mdm")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--loss-weight", choices=LOSS_WEIGHTS, default="elbo")
    parser.add_argument("--t-min", type=float, default=1e-3)
    parser.add_argument("--train-steps", type=int, required=True)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="runs/recipe", help="where checkpoints go")
    parser.add_argument("--run-name", default=None,
                        help="the run directory under --runs (default NAME; an MDM and an AR "
                             "experiment may share one, as mdm-exact evaluate expects)")
    parser.add_argument("--note", default="", help="why this experiment (kept in the JSON)")
    return parser.parse_args(argv)


def measure(language, model, kind: str, length: int) -> dict:
    """The curve point of ``model``: learning error (MDM) or KL(q || p_AR) / L (AR)."""
    den = TorchDenoiser(model)
    if kind == "mdm":
        le = learning_error(language, den, length, rng=np.random.default_rng(12345))
        return {"le_mean": le.mean, "le_p95": le.p95, "le_max": le.max,
                "le_mean_per_t": [r.mean for r in le.per_time]}
    x = language.sample(1024, length, np.random.default_rng(12345))
    _, per_token = autoregressive_kl(language, den, x)
    return {"ar_kl_per_token": per_token.value, "ar_kl_low": per_token.low,
            "ar_kl_high": per_token.high}


def main(argv=None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    language = preset(args.preset)
    model_config = ModelConfig(args.kind, language.vocab_size, args.length, width=args.width,
                               depth=args.depth, heads=args.heads)
    train_config = TrainConfig(args.length, steps=args.train_steps, batch_size=args.batch_size,
                               lr=args.lr, seed=args.seed, loss_weight=args.loss_weight,
                               t_min=args.t_min)
    run_dir = Path(args.runs) / (args.run_name or args.name)
    entropy_rate = language.entropy(args.length).value / args.length
    record = {
        "format": FORMAT, "name": args.name, "note": args.note, "preset": args.preset,
        "kind": args.kind, "length": args.length, "entropy_rate": entropy_rate,
        "model": model_config.to_dict(), "train": train_config.to_dict(),
        "torch_threads": args.threads, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": _common.machine_info("torch", "numpy"),
        "revision": _common.source_revision(),
        "parameters": None, "curve": [],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{args.name}.json"
    wall = 0.0
    step = 0
    while step < args.train_steps:
        target = min(args.train_steps, step + args.eval_every)
        start = time.perf_counter()
        result = train(language, model_config, train_config, run_dir, device="cpu",
                       progress=False, stop_after=target)
        wall += time.perf_counter() - start
        step = result.step
        tail = result.losses[-min(100, result.losses.size):]
        point = {"step": step, "wall_seconds": round(wall, 2),
                 "train_loss": float(tail.mean()), "loadavg": _common.loadavg(),
                 **measure(language, result.model, args.kind, args.length)}
        record["parameters"] = result.model.num_parameters()
        record["curve"].append(point)
        path.write_text(json.dumps(record, indent=1) + "\n")
        shown = {k: round(v, 4) for k, v in point.items() if isinstance(v, float)}
        print(args.name, step, shown, flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
