"""The optional torch subpackage against the exact language.

One tiny configuration (2-gram, V = 4, threshold pruning so that q has forbidden transitions,
L = 16, width 64) is trained once per module for the MDM and the AR baseline; the tests then
check the ELBO, the measured learning error (Assumption 4.1), SER at 1 step vs L steps, the AR
SER, checkpoint reloads, resuming, the samplers' costs and the bad-input errors. Torch and numba
run on one thread here: on a shared 2-core machine a second thread mostly waits.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mdm_exact import MASK, random_ngram  # noqa: E402
from mdm_exact.nn import (  # noqa: E402
    CachedDenoiser,
    ModelConfig,
    TorchDenoiser,
    TrainConfig,
    Transformer,
    autoregressive,
    ddpm,
    ddpm_cache,
    evaluate,
    evaluate_run,
    fixed_count,
    learning_error,
    load_model,
    train,
)
from mdm_exact.nn.commands import (  # noqa: E402
    add_evaluate_arguments,
    add_train_arguments,
    run_evaluate,
    run_train,
)
from mdm_exact.schedules import Schedule  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]

LENGTH = 16
TINY = {"width": 64, "depth": 2, "heads": 4}
MDM_TRAIN = {"steps": 300, "batch_size": 96, "lr": 3e-3, "loss_weight": "elbo"}
AR_TRAIN = {"steps": 200, "batch_size": 64, "lr": 6e-3}


@pytest.fixture(scope="module")
def language():
    """2-gram over 4 tokens with 31% of its transitions pruned to zero."""
    lang = random_ngram(2, 4, threshold=0.1, seed=0)
    assert lang.metadata["pruned_fraction"] > 0.25
    return lang


@pytest.fixture(scope="module")
def trained(tmp_path_factory, language):
    """The tiny MDM and AR models, trained into one run directory: (run_dir, {kind: model})."""
    out = tmp_path_factory.mktemp("run")
    models = {}
    for kind, settings in (("mdm", MDM_TRAIN), ("ar", AR_TRAIN)):
        models[kind] = train(language, ModelConfig(kind, 4, LENGTH, **TINY),
                             TrainConfig(LENGTH, **settings), out, device="cpu",
                             progress=False).model
    return out, models


@pytest.fixture(scope="module")
def run_dir(trained):
    return trained[0]


@pytest.fixture(scope="module")
def mdm(run_dir):
    return load_model(run_dir, "mdm", "cpu")[0]


@pytest.fixture(scope="module")
def report(trained, language):
    """Evaluation of the in-memory trained models (steps 1 and L, 400 samples, seed 3)."""
    models = trained[1]
    return evaluate(language, LENGTH, [1, LENGTH], 400, mdm=TorchDenoiser(models["mdm"]),
                    ar=TorchDenoiser(models["ar"]), seed=3)


# ---------------------------------------------------------------------------------- import


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


def test_import_without_torch_names_the_extra():
    res = _python("import sys; sys.modules['torch'] = None; import mdm_exact.nn")
    assert res.returncode != 0
    assert "ImportError" in res.stderr
    assert "pip install 'mdm_exact[torch]'" in res.stderr


def test_import_mdm_exact_never_imports_torch():
    res = _python("import sys, mdm_exact; print('torch' in sys.modules)")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


# ---------------------------------------------------------------------------------- model


def test_denoiser_subs_carry_over_and_attention_direction():
    cfg = ModelConfig("mdm", 4, 8, **TINY)
    den = TorchDenoiser(Transformer(cfg), device="cpu")
    x = np.array([[0, MASK, 2, MASK, MASK, 3, MASK, 1]])
    p = den(x)
    assert p.dtype == np.float64 and p.shape == (1, 8, 4)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-12)
    revealed = x[0] != MASK
    np.testing.assert_array_equal(p[0, revealed], np.eye(4)[x[0, revealed]])
    # Bidirectional: the last token changes the prediction at position 1.
    y = x.copy()
    y[0, 7] = 0
    assert not np.allclose(den(y)[0, 1], p[0, 1])

    ar = TorchDenoiser(Transformer(ModelConfig("ar", 4, 8, **TINY)), device="cpu")
    prefix = np.array([[0, 2, MASK, MASK, MASK, MASK, MASK, MASK]])
    out = ar(prefix)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="prefix"):
        ar(np.array([[0, MASK, 2, MASK, MASK, MASK, MASK, MASK]]))


# ---------------------------------------------------------------------------------- training


def test_elbo_falls(run_dir, language):
    state = torch.load(run_dir / "mdm.resume.pt", weights_only=True)
    losses = state["losses"].numpy()
    assert losses.size == MDM_TRAIN["steps"]
    entropy_rate = language.entropy(LENGTH).value / LENGTH
    first, last = losses[:20].mean(), losses[-50:].mean()
    assert last < first - 0.3
    # The negative ELBO bounds -log p(x) >= H(q) in expectation: it ends close above H(q)/L.
    assert entropy_rate - 0.05 < last < entropy_rate + 0.15


def test_learning_error_is_small(report):
    le = report.learning_error
    assert le.mean < 0.05, le
    assert len(le.per_time) == 5 and all(r.positions > 0 for r in le.per_time)
    assert le.mean <= le.p95 <= le.max


def test_one_step_ser_far_above_L_steps(report):
    one, full = report.row("mdm", 1), report.row("mdm", LENGTH)
    assert one.ser.low > full.ser.high + 0.3
    assert one.nfe_cache == 1 and full.nfe_cache <= LENGTH
    # The learned model follows the oracle on the same schedule.
    oracle_one = report.row("oracle", 1)
    assert abs(one.ser.value - oracle_one.ser.value) < 0.1
    assert np.isinf(one.gen_log_ppl.value)


def test_ar_baseline_ser(report):
    ar = report.row("ar", LENGTH)
    assert ar.ser.value < 0.05
    assert ar.nfe_cache == LENGTH
    assert report.rows[-1] is ar


def test_reloaded_checkpoint_reproduces_the_evaluation(run_dir, trained, report):
    mdm_state = torch.load(run_dir / "mdm.pt", weights_only=True)
    for key, value in trained[1]["mdm"].state_dict().items():
        assert torch.equal(mdm_state[key], value), key
    again = evaluate_run(run_dir, [1, LENGTH], 400, seed=3, device="cpu")
    assert again.as_dict() == report.as_dict()


def test_resume_continues_identically(tmp_path, language):
    cfg = ModelConfig("mdm", 4, LENGTH, width=32, depth=1, heads=2)
    tcfg = TrainConfig(LENGTH, steps=16, batch_size=16, lr=3e-3, seed=5)
    whole = train(language, cfg, tcfg, tmp_path / "whole", progress=False, checkpoint_every=5)
    half = train(language, cfg, tcfg, tmp_path / "split", progress=False, checkpoint_every=5,
                 stop_after=7)
    assert half.step == 7 and not half.complete
    rest = train(language, cfg, tcfg, tmp_path / "split", progress=False, checkpoint_every=5)
    assert rest.step == 16 and rest.complete
    np.testing.assert_array_equal(rest.losses, whole.losses)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, rest.model.state_dict()[key]), key
    with pytest.raises(ValueError, match="different train config"):
        train(language, cfg, TrainConfig(LENGTH, steps=16, batch_size=16, lr=1e-3, seed=5),
              tmp_path / "split", progress=False)


# ---------------------------------------------------------------------------------- samplers


def test_samplers_same_tokens_different_costs(mdm, language):
    den = TorchDenoiser(mdm)
    plan = Schedule.linear(32)
    plain = ddpm(den, language, plan, LENGTH, 50, rng=11)
    cached = ddpm_cache(den, language, plan, LENGTH, 50, rng=11)
    np.testing.assert_array_equal(plain.tokens, cached.tokens)
    assert np.all(plain.nfe == 32)
    distinct = np.array([np.unique(r).size for r in cached.reveal_step])
    np.testing.assert_array_equal(cached.nfe, distinct)
    assert np.all(cached.nfe <= LENGTH) and cached.network_calls <= 32

    fixed = fixed_count(den, language, 4, LENGTH, 20, rng=1)
    assert np.all(fixed.nfe == 4)
    assert all(np.bincount(r, minlength=4).tolist() == [4, 4, 4, 4] for r in fixed.reveal_step)

    counted = CachedDenoiser(den)
    x = np.full((3, LENGTH), MASK)
    counted(x)
    counted(x.copy())
    assert (counted.calls, counted.requests) == (1, 2)


def test_autoregressive_needs_a_causal_model(language, mdm, run_dir):
    ar = TorchDenoiser(load_model(run_dir, "ar", "cpu")[0])
    gen = autoregressive(ar, language, LENGTH, 10, rng=0)
    assert np.all(gen.nfe == LENGTH) and np.all(gen.tokens >= 0)


def test_learning_error_of_the_oracle_is_zero(language):
    from mdm_exact.sampling import Oracle

    le = learning_error(language, Oracle(language), 8, num_sequences=16, rng=0)
    assert le.max < 1e-12


# ---------------------------------------------------------------------------------- errors


def test_bad_inputs(tmp_path, language, mdm, run_dir):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args(["--preset", "5-gram", "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="preset must be one of"):
        run_train(args)

    with pytest.raises(ValueError, match="max_length"):
        TorchDenoiser(mdm)(np.full((1, LENGTH + 1), MASK))
    with pytest.raises(ValueError, match="max_length"):
        evaluate_run(run_dir, [4], 10, length=LENGTH + 1, device="cpu")

    with pytest.raises(FileNotFoundError, match="no run directory"):
        evaluate_run(tmp_path / "missing", [4], 10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no trained mdm model"):
        load_model(tmp_path / "empty", "mdm")
    with pytest.raises(FileNotFoundError, match="no trained model"):
        evaluate_run(tmp_path / "empty", [4], 10)

    with pytest.raises(ValueError, match="vocab_size"):
        train(language, ModelConfig("mdm", 5, LENGTH, **TINY), TrainConfig(LENGTH, steps=1),
              tmp_path / "y", progress=False)
    with pytest.raises(ValueError, match="kind"):
        ModelConfig("bert", 4, LENGTH)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            TorchDenoiser(mdm, device="cuda")


# ---------------------------------------------------------------------------------- CLI


def test_cli_train_then_evaluate_json(tmp_path, language, capsys):
    lang_file = tmp_path / "lang.json"
    language.save(lang_file)
    out = tmp_path / "cli"
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    for kind in ("mdm", "ar"):
        args = parser.parse_args(["--language", str(lang_file), "--length", "8", "--kind", kind,
                                  "--train-steps", "3", "--out", str(out), "--width", "32",
                                  "--depth", "1", "--heads", "2", "--batch-size", "8",
                                  "--device", "cpu"])
        assert run_train(args) == 0
    assert "trained ar" in capsys.readouterr().out

    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    args = parser.parse_args([str(out), "--steps", "2,8", "--samples", "20", "--json"])
    assert run_evaluate(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["steps"]) for r in data["rows"]] == [
        ("mdm", 2), ("oracle", 2), ("mdm", 8), ("oracle", 8), ("ar", 8)]
    assert data["learning_error"]["positions"] > 0

    args = parser.parse_args([str(out), "--steps", "4", "--samples", "20"])
    assert run_evaluate(args) == 0
    table = capsys.readouterr().out
    assert "learning error" in table and "oracle" in table
    legend = table.split("columns:")[1]  # every column of the table explained under it
    assert all(f"  {name} " in legend for name in ("NFE cache (E)", "valid-only", "SER"))

    with pytest.raises(ValueError, match="--steps"):
        run_evaluate(parser.parse_args([str(out), "--steps", "4,x"]))


def test_cli_evaluate_help_explains_the_columns():
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    text = parser.format_help()
    assert "ddpm_cache" in text and "valid-only" in text and "biased" in text


def test_cli_train_steps_is_a_deprecated_alias(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    tiny = ["--preset", "2-gram", "--length", "4", "--width", "16", "--depth", "1", "--heads",
            "2", "--batch-size", "2", "--device", "cpu"]
    assert run_train(parser.parse_args([*tiny, "--steps", "2", "--out",
                                        str(tmp_path / "old")])) == 0
    out, err = capsys.readouterr()
    assert "for 2 steps" in out
    # one warning line (a progress bar may follow it on a slow machine)
    assert err.startswith("mdm-exact: warning: train --steps is deprecated, use --train-steps 2\n")
    assert err.count("warning") == 1
    with pytest.raises(ValueError, match="--train-steps only"):
        run_train(parser.parse_args([*tiny, "--steps", "2", "--train-steps", "3", "--out",
                                     str(tmp_path / "both")]))
    assert not (tmp_path / "both").exists()


def test_cli_train_loss_weight_and_threads(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    tiny = ["--preset", "2-gram", "--length", "4", "--width", "16", "--depth", "1", "--heads",
            "2", "--batch-size", "2", "--device", "cpu", "--train-steps", "2"]
    for weight in ("elbo", "flat"):
        out = tmp_path / weight
        assert run_train(parser.parse_args([*tiny, "--loss-weight", weight, "--threads", "1",
                                            "--out", str(out)])) == 0
        assert json.loads((out / "mdm.json").read_text())["train"]["loss_weight"] == weight
        said = capsys.readouterr().out
        assert ("masked cross-entropy" in said) == (weight == "flat")
        assert ("H(q)/L" in said) == (weight == "elbo")
    assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="--threads must be >= 1, got 0"):
        run_train(parser.parse_args([*tiny, "--threads", "0", "--out", str(tmp_path / "no")]))
    assert not (tmp_path / "no").exists()
    with pytest.raises(SystemExit):
        parser.parse_args([*tiny, "--loss-weight", "uniform", "--out", str(tmp_path / "no")])


# ---------------------------------------------------------------------------------- recipe options


def test_flat_loss_is_the_mean_cross_entropy_of_the_masked_positions(language):
    from mdm_exact.nn.train import batch_loss

    model = Transformer(ModelConfig("mdm", 4, 8, **TINY))
    x = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3], [3, 3, 2, 2, 1, 1, 0, 0]])
    mask = torch.tensor([[1, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1, 0]], dtype=torch.bool)
    t = torch.tensor([0.25, 0.5])
    with torch.no_grad():
        logits = model(torch.where(mask, torch.full_like(x, 4), x)).double()
        log_p = torch.log_softmax(logits, -1).gather(-1, x[..., None])[..., 0]
        masked = [(-log_p[b, i]).item() for b in range(2) for i in range(8) if mask[b, i]]
        flat = batch_loss(model, x, mask, t, "flat").item()
        elbo = batch_loss(model, x, mask, t, "elbo").item()
    assert flat == pytest.approx(sum(masked) / 4, rel=1e-6)
    # The ELBO weighs row b's masked terms by 1 / t_b and divides by all 16 tokens.
    by_row = [sum(-log_p[b, i].item() for i in range(8) if mask[b, i]) for b in range(2)]
    assert elbo == pytest.approx((by_row[0] / 0.25 + by_row[1] / 0.5) / 16, rel=1e-6)
    with pytest.raises(ValueError, match="loss_weight must be one of"):
        TrainConfig(LENGTH, loss_weight="uniform")


def test_run_written_before_the_loss_weight_option_resumes(tmp_path, language):
    cfg = ModelConfig("mdm", 4, LENGTH, width=32, depth=1, heads=2)
    # Such a run trained on the 1/t ELBO, the only loss there was.
    tcfg = TrainConfig(LENGTH, steps=4, batch_size=8, seed=1, loss_weight="elbo")
    train(language, cfg, tcfg, tmp_path, progress=False, stop_after=2)
    info = json.loads((tmp_path / "mdm.json").read_text())
    del info["train"]["loss_weight"]
    (tmp_path / "mdm.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="different train config"):
        train(language, cfg, TrainConfig(LENGTH, steps=4, batch_size=8, seed=1,
                                         loss_weight="flat"), tmp_path, progress=False)
    assert train(language, cfg, tcfg, tmp_path, progress=False).step == 4


def test_autoregressive_kl_matches_left_to_right_products(trained, language):
    """log p_AR(x) from one forward pass equals the product of the left-to-right conditionals
    the denoiser gives one prefix at a time; the KL is the mean of log q(x) - log p_AR(x)."""
    from mdm_exact.nn import autoregressive_kl

    ar = TorchDenoiser(trained[1]["ar"])
    x = language.sample(6, LENGTH, np.random.default_rng(8))
    log_p = np.zeros(len(x))
    for j in range(LENGTH):
        prefix = x.copy()
        prefix[:, j:] = MASK
        log_p += np.log(ar(prefix)[np.arange(len(x)), j, x[:, j]])
    gap = language.log_prob(x) - log_p
    kl, per_token = autoregressive_kl(language, ar, x)
    assert kl.value == pytest.approx(max(gap.mean(), 0.0), abs=1e-5)
    assert per_token.value == pytest.approx(kl.value / LENGTH, rel=1e-12)
    assert kl.num_samples == 6 and kl.low <= kl.value <= kl.high
    with pytest.raises(TypeError, match="autoregressive"):
        autoregressive_kl(language, TorchDenoiser(trained[1]["mdm"]), x)


def test_evaluation_reports_the_ar_excess(report):
    assert report.ar_kl_per_token is not None
    assert report.ar_kl_per_token.value == pytest.approx(report.ar_kl.value / LENGTH)
    assert 0 <= report.ar_kl_per_token.value < 0.05
    assert "AR excess KL(q || p_AR) / L" in report.format()
