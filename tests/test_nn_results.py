"""The results JSON of ``evaluate``, the learned figure, the docs generator, the adaptive
policies on a learned model, the context check and the paper-scale script's dry run.

One tiny run (2-gram over 4 tokens with forbidden transitions, L = 6, width 32, one block, a
few dozen steps) is trained and evaluated once per module; torch and numba run on one thread.
``test_recipe_reaches_the_learning_error_target`` is the opt-in check ``pytest -m slow_train``
(minutes; deselected by default in pyproject.toml).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mdm_exact import random_ngram  # noqa: E402
from mdm_exact.errors import ArgumentError, MissingFileError  # noqa: E402
from mdm_exact.nn import (  # noqa: E402
    RESULTS_FILE,
    ModelConfig,
    TorchDenoiser,
    TrainConfig,
    evaluate,
    evaluate_run,
    load_model,
    policy_kl,
    train,
)
from mdm_exact.nn.commands import add_evaluate_arguments, run_evaluate  # noqa: E402
from mdm_exact.policies import TopK, parse_policy  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]

ROOT = Path(__file__).resolve().parent.parent
LENGTH = 6
TINY = {"width": 32, "depth": 1, "heads": 2}
EVAL = {"steps": [2, LENGTH], "num_samples": 30, "seed": 1}
POLICIES = ("topk-confidence:6", "random-topk:3")


@pytest.fixture(scope="module")
def language():
    return random_ngram(2, 4, threshold=0.1, seed=0)


@pytest.fixture(scope="module")
def run(tmp_path_factory, language):
    """A trained MDM and AR in one run directory, evaluated once (its results.json written)."""
    out = tmp_path_factory.mktemp("nn") / "run"
    for kind, steps in (("mdm", 30), ("ar", 10)):
        train(language, ModelConfig(kind, 4, LENGTH, **TINY),
              TrainConfig(LENGTH, steps=steps, batch_size=32, lr=3e-3), out, device="cpu",
              progress=False)
    evaluate_run(out, EVAL["steps"], EVAL["num_samples"], seed=EVAL["seed"], device="cpu",
                 policies=[parse_policy(p) for p in POLICIES])
    return out


@pytest.fixture(scope="module")
def results(run):
    return json.loads((run / RESULTS_FILE).read_text())


def _without_timing(data: dict) -> dict:
    return {key: value for key, value in data.items() if key != "timing"}


# ---------------------------------------------------------------------------- results JSON


def test_reloaded_checkpoint_reproduces_the_json_bit_for_bit(run, results, capsys):
    first = (run / RESULTS_FILE).read_text()
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    argv = [str(run), "--steps", "2,6", "--samples", "30", "--seed", "1", "--device", "cpu"]
    for spec in POLICIES:
        argv += ["--policy", spec]
    assert run_evaluate(parser.parse_args(argv)) == 0
    assert f"wrote {run / RESULTS_FILE}" in capsys.readouterr().out
    second = (run / RESULTS_FILE).read_text()
    a, b = json.loads(first), json.loads(second)
    assert json.dumps(_without_timing(a)) == json.dumps(_without_timing(b))
    assert a["timing"]["wall_seconds"] > 0 and set(a["timing"]) == set(b["timing"])


def test_results_name_the_checkpoints_and_the_language(run, results, language):
    import hashlib

    assert results["format"] == "mdm_exact.nn.results/1"
    for kind in ("mdm", "ar"):
        digest = hashlib.sha256((run / f"{kind}.pt").read_bytes()).hexdigest()
        assert results["models"][kind]["sha256"] == digest
        assert results["models"][kind]["model"]["max_length"] == LENGTH
    assert results["language"] == json.loads(json.dumps(language.to_dict()))
    assert [p["rule"] for p in results["policies"]] == ["topk", "random_topk"]
    rows = [(r["model"], r["steps"]) for r in results["evaluation"]["rows"]]
    assert rows == [("mdm", 2), ("oracle", 2), ("mdm", 6), ("oracle", 6), ("ar", 6)]


# ---------------------------------------------------------------------------- policies


def test_policy_rows(results):
    rows = {(r["policy"], r["model"]): r for r in results["evaluation"]["policy_rows"]}
    assert set(rows) == {(p, m) for p in POLICIES for m in ("mdm", "oracle")}
    # One position at a time with the exact conditionals is exact: KL(q || p) = 0 for every x.
    oracle = rows["topk-confidence:6", "oracle"]
    assert all(0.0 <= oracle["kl"][k] < 1e-12 for k in ("value", "low", "high"))
    assert oracle["ser"]["value"] == 0.0 and oracle["nfe"] == LENGTH
    learned = rows["topk-confidence:6", "mdm"]
    kl, per_token = float(learned["kl"]["value"]), float(learned["kl_per_token"]["value"])
    assert kl > 0 and math.isclose(per_token, kl / LENGTH)
    for model in ("mdm", "oracle"):
        random_row = rows["random-topk:3", model]
        assert random_row["kl"] is None and "random" in random_row["kl_note"]
        assert random_row["nfe"] == 3


def test_policy_kl_of_a_uniform_denoiser(language):
    """A denoiser that answers 1/V everywhere makes p(x) = V^-L under any policy, so the KL
    estimate is the mean of log q(x) + L log V, with a Student t interval."""
    from scipy import stats

    def uniform(x):
        return np.full((*np.shape(x), 4), 0.25)

    x = language.sample(40, LENGTH, np.random.default_rng(0))
    gap = np.asarray(language.log_prob(x)) + LENGTH * math.log(4)
    half = stats.t.ppf(0.975, gap.size - 1) * gap.std(ddof=1) / math.sqrt(gap.size)
    kl, per_token = policy_kl(language, TopK("confidence", LENGTH), uniform, x)
    assert math.isclose(kl.value, gap.mean(), rel_tol=1e-12)
    assert math.isclose(kl.low, max(gap.mean() - half, 0.0), rel_tol=1e-9)
    assert math.isclose(kl.high, gap.mean() + half, rel_tol=1e-9)
    assert math.isclose(per_token.value, gap.mean() / LENGTH, rel_tol=1e-12)


# ---------------------------------------------------------------------------- context


def test_length_above_the_context_is_refused_before_loading(run, tmp_path, language):
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    (damaged / "mdm.pt").write_bytes(b"garbage")  # loading it would fail differently
    with pytest.raises(ArgumentError, match=r"context \(max_length\) 6, got 7"):
        evaluate_run(damaged, [2], 10, length=LENGTH + 1, device="cpu")
    model = load_model(run, "mdm", "cpu")[0]
    with pytest.raises(ArgumentError, match="mdm model's context"):
        evaluate(language, LENGTH + 1, [2], 10, mdm=TorchDenoiser(model))
    with pytest.raises(ArgumentError, match="block_length"):
        evaluate_run(run, [2], 10, device="cpu", save=False,
                     policies=[parse_policy("threshold:0.9", LENGTH + 1)])


# ---------------------------------------------------------------------------- figure


def test_learned_figure_draws_the_results(run, results):
    from mdm_exact.plotting import figure_learned

    fig = figure_learned([run])
    ax_ppl, ax_ser = fig.get_axes()
    legend = " ".join(t.get_text() for t in ax_ser.get_legend().get_texts())
    le = results["evaluation"]["learning_error"]
    assert f"learning error mean {le['mean']:.3f}, p95 {le['p95']:.3f} nats" in legend
    assert "Oracle, same reveal steps" in legend and "AR" in legend
    rows = {(r["model"], r["steps"]): r for r in results["evaluation"]["rows"]}
    drawn = {line.get_label(): line.get_ydata() for line in ax_ser.get_lines()}
    mdm = next(y for label, y in drawn.items() if label.startswith("learned MDM"))
    np.testing.assert_array_equal(mdm, [rows["mdm", n]["ser"]["value"] for n in (2, 6)])
    assert "nats" in ax_ppl.get_ylabel()
    # the same from the results dicts a user holds
    assert len(figure_learned([results]).get_axes()) == 2


def test_learned_figure_cli_and_refusals(run, results, tmp_path):
    from mdm_exact.cli import main
    from mdm_exact.plotting import figure_learned_data

    out = tmp_path / "learned.png"
    assert main(["figure", "learned", "--run", str(run), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    other = tmp_path / "other"
    other.mkdir()
    changed = dict(results, language=random_ngram(2, 4, seed=1).to_dict())
    (other / RESULTS_FILE).write_text(json.dumps(changed))
    with pytest.raises(ArgumentError, match="different languages") as info:
        figure_learned_data([run, other])
    assert str(run) in str(info.value) and str(other) in str(info.value)
    with pytest.raises(MissingFileError, match="no results.json"):
        figure_learned_data([tmp_path])
    (other / RESULTS_FILE).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ArgumentError, match="not a results file"):
        figure_learned_data([other])


# ---------------------------------------------------------------------------- docs, script


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_docs_generator_rewrites_only_the_marked_sections(run, results, tmp_path):
    make = _load(ROOT / "docs" / "make_nn_results.py", "make_nn_results")
    page = tmp_path / "page.md"
    prose = "# Title\n\nHand-written prose with 0.1234.\n\n"
    page.write_text(prose + "<!-- BEGIN GENERATED tiny -->\nstale numbers\n"
                    "<!-- END GENERATED tiny -->\n\nMore prose.\n")
    folder = tmp_path / "results"
    argv = ["--page", str(page), "--results", str(folder)]
    assert make.main([*argv, "--add", str(run), "tiny"]) == 0
    text = page.read_text()
    assert text.startswith(prose) and text.endswith("<!-- END GENERATED tiny -->\n\nMore prose.\n")
    assert "stale numbers" not in text
    ser = results["evaluation"]["rows"][0]["ser"]
    assert f"{ser['value']:.4f} [{ser['low']:.4f}, {ser['high']:.4f}]" in text
    assert f"{results['evaluation']['learning_error']['mean']:.4f}" in text
    assert make.main([*argv, "--check"]) == 0
    page.write_text(text.replace("More prose", "Edited prose").replace("mdm ", "MDM ", 1))
    assert make.main([*argv, "--check"]) == 1


def test_docs_generator_tabulates_the_recipe_search(results, tmp_path):
    make = _load(ROOT / "docs" / "make_nn_results.py", "make_nn_results")
    folder = tmp_path / "results"
    (folder / "recipe").mkdir(parents=True)
    machine = {"cpu_model": "Test CPU", "logical_cpus": 2, "torch": "t", "numpy": "n",
               "platform": "p"}
    common = {"format": make.RECIPE_FORMAT, "preset": "2-gram", "length": 64, "machine": machine,
              "model": {"width": 64, "depth": 2}, "torch_threads": 1, "parameters": 101192,
              "train": {"batch_size": 64, "lr": 0.001, "steps": 4, "loss_weight": "flat"}}
    mdm = dict(common, name="m1", kind="mdm", note="why m1", curve=[
        {"step": 2, "wall_seconds": 60.0, "le_mean": 0.25, "le_p95": 0.5},
        {"step": 4, "wall_seconds": 150.0, "le_mean": 0.0123, "le_p95": 0.0456}])
    ar = dict(common, name="a1", kind="ar", note="", curve=[
        {"step": 4, "wall_seconds": 30.0, "ar_kl_per_token": 0.0078}])
    for data in (mdm, ar):
        (folder / "recipe" / f"{data['name']}.json").write_text(json.dumps(data))
    page = tmp_path / "page.md"
    page.write_text("<!-- BEGIN GENERATED recipe -->\n<!-- END GENERATED recipe -->\n")
    assert make.main(["--page", str(page), "--results", str(folder)]) == 0
    text = page.read_text()
    assert "| `m1` | 2-gram, L = 64 | 101,192 | 64×2 | 64 | 0.001 | flat | 1 | 4 of 4 | 2.5 | " \
           "0.0123 | 0.0456 | why m1 |" in text
    assert "| `a1` |" in text and "| 0.0078 |" in text and "Test CPU" in text
    assert "m1 (le_mean/le_p95): 2@1.0:0.2500/0.5000  4@2.5:0.0123/0.0456" in text
    (folder / "recipe" / "bad.json").write_text(json.dumps(dict(mdm, format="other")))
    with pytest.raises(SystemExit, match="format"):
        make.main(["--page", str(page), "--results", str(folder)])


def test_docs_page_is_in_sync_with_its_results():
    make = _load(ROOT / "docs" / "make_nn_results.py", "make_nn_results")
    assert make.main(["--check"]) == 0


def test_paper_scale_script_dry_run(tmp_path, capsys):
    script = _load(ROOT / "examples" / "paper_scale_gpu.py", "paper_scale_gpu")
    assert script.main(["--dry-run", "--out", str(tmp_path / "paper")]) == 0
    text = capsys.readouterr().out
    for name in ("2-gram", "3-gram", "4-gram", "hmm"):
        assert name in text
    assert "expected run time" in text and "512" in text
    assert not (tmp_path / "paper").exists()


# ---------------------------------------------------------------------------- opt-in recipe

SLOW_TRAIN_STEPS = 4000
"""Optimizer steps of the opt-in check (the recipe's 14,000 are sized for L = 64)."""



@pytest.mark.slow_train
def test_recipe_reaches_the_learning_error_target(tmp_path):
    """The recipe (``mdm-exact train``'s defaults: ``ModelConfig`` and ``TrainConfig``) on the
    2-gram preset at L = 16 with 4000 steps: mean learning error <= 0.02 nats, 95th percentile
    <= 0.05 (the 2-gram targets of docs/nn_results.md), in about 2 minutes on one thread."""
    import time

    from mdm_exact import preset
    from mdm_exact.nn import learning_error

    lang = preset("2-gram")
    start = time.perf_counter()
    result = train(lang, ModelConfig("mdm", lang.vocab_size, 16),
                   TrainConfig(16, steps=SLOW_TRAIN_STEPS), tmp_path / "run", device="cpu",
                   progress=False)
    le = learning_error(lang, TorchDenoiser(result.model), 16, rng=np.random.default_rng(0))
    seconds = time.perf_counter() - start
    print(f"2-gram, L = 16, {SLOW_TRAIN_STEPS} steps: learning error mean {le.mean:.4f}, "
          f"p95 {le.p95:.4f} nats, {seconds:.0f} s")
    assert le.mean <= 0.02 and le.p95 <= 0.05, (le.mean, le.p95, seconds)
