"""``seqrl train … --model DIR --prompts FILE`` on a tiny GPT-2 saved to a temporary directory (issue 23's targets):
each run writes ``OUT/model`` with save_pretrained, which plain ``transformers`` loads back; π(·|x) of that model is
enumerated per prompt and compared with the exact target.

- ``kl_control`` with its default config and a text reward r = 0.2·[the completion has an "a"] reaches
  p_z(·|x) ∝ a(·|x)·e^{r/β}: mean over the 3 prompts of KL(π‖p_z) < 0.05 (measured, seeds 0–2: 0.009 each; start
  0.306).
- ``gdcpp`` and ``cdpg`` with the scorer b = [the completion has an "a"] (``--scorer``: P = a·b) reach
  p_x ∝ a(·|x)·b(x, ·): mean KL(p_x‖π) < 0.05 (seeds 0–2, 150 steps at lr 3e-3: gdcpp 0.016–0.019, cdpg
  0.021–0.028; start 2.24).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tiny_lm import MAX_LEN, write_tiny_lm  # noqa: E402

from seqrl.cli import main  # noqa: E402

PROMPTS = ["a", "b c", "c a b"]
SCALE = 0.2


def has_a(completions, **kwargs):
    """b(x, y) = [y has an "a"]: a text-level scorer (TRL's reward signature)."""
    return [float("a" in text.split()) for text in completions]


def some_a(completions, **kwargs):
    """r(x, y) = 0.2·[y has an "a"]: a text-level reward."""
    return [SCALE * float("a" in text.split()) for text in completions]


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm-cli")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    return write_tiny_lm(root / "start"), root / "prompts.txt"


def seqrl_train(capsys, monkeypatch, *argv) -> dict:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    code = main(["train", *map(str, argv), "--device", "cpu", "--no-progress", "--policy-set", f"max_len={MAX_LEN}"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


# --- π(·|x) of a saved model by enumeration, with transformers alone -----------------------------------------
def completions(tokenizer) -> list[list[int]]:
    """Every completion of at most MAX_LEN tokens, EOS included (seqrl's max_len)."""
    eos = tokenizer.eos_token_id
    words = [i for i in range(len(tokenizer)) if i != eos]
    return [[*seq, eos] for n in range(MAX_LEN) for seq in itertools.product(words, repeat=n)]


@torch.no_grad()
def log_probs(model, prompt: list[int], ys: list[list[int]]) -> torch.Tensor:
    """log π(y|x): the model's next-token log-softmax after the prompt's tokens, the last position's EOS forced
    (seqrl's convention: EOS at position max_len − 1 has probability 1)."""
    out = []
    for y in ys:
        logp = model(input_ids=torch.tensor([prompt + y])).logits[0].double().log_softmax(-1)
        out.append(sum(float(logp[len(prompt) - 1 + t, token]) for t, token in enumerate(y) if t < MAX_LEN - 1))
    return torch.tensor(out, dtype=torch.float64)


def per_prompt(start: Path, trained: Path):
    """(log a(y|x), log π(y|x), [y has an "a"]) for each prompt, over every completion."""
    load = dict(local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(trained, **load)
    a = transformers.AutoModelForCausalLM.from_pretrained(start, **load).eval()
    pi = transformers.AutoModelForCausalLM.from_pretrained(trained, **load).eval()
    ys = completions(tokenizer)
    has = torch.tensor([float(tokenizer.convert_tokens_to_ids("a") in y) for y in ys], dtype=torch.float64)
    for text in PROMPTS:
        prompt = tokenizer(text)["input_ids"]
        yield log_probs(a, prompt, ys), log_probs(pi, prompt, ys), has


def kl(log_p: torch.Tensor, log_q: torch.Tensor) -> float:
    p = log_p.exp()
    return float(torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum())


def test_kl_control_with_the_defaults_reaches_each_prompts_optimum(setting, tmp_path, capsys, monkeypatch):
    start, prompts = setting
    report = seqrl_train(capsys, monkeypatch, "kl_control", "--model", start, "--prompts", prompts, "--reward",
                         "test_lm_cli:some_a", "--steps", 40, "--out", tmp_path)
    assert report["model"] == str(tmp_path / "model") and report["final_evaluation"] == {}
    kls, starts = [], []
    beta = 0.1  # kl_control's default
    for log_a, log_pi, has in per_prompt(start, tmp_path / "model"):
        log_target = log_a + SCALE * has / beta
        log_target = log_target - torch.logsumexp(log_target, 0)
        assert math.isclose(float(log_pi.exp().sum()), 1.0, abs_tol=1e-6)
        kls.append(kl(log_pi, log_target))
        starts.append(kl(log_a, log_target))
    assert sum(starts) / 3 > 0.25 and sum(kls) / 3 < 0.02, (starts, kls)  # measured 0.009


@pytest.mark.parametrize("algorithm", ["gdcpp", "cdpg"])
def test_gdcpp_and_cdpg_move_each_prompt_close_to_its_constrained_target(setting, tmp_path, capsys, monkeypatch,
                                                                         algorithm):
    start, prompts = setting
    seqrl_train(capsys, monkeypatch, algorithm, "--model", start, "--prompts", prompts, "--scorer",
                "test_lm_cli:has_a", "--steps", 150, "--lr", 3e-3, "--out", tmp_path)
    # Not the defaults (lr 1e-4 is GPT-2's): a stated budget that takes KL(p_x‖π) from > 1 to 0.016–0.028.
    kls, starts = [], []
    for log_a, log_pi, has in per_prompt(start, tmp_path / "model"):
        log_target = torch.where(has > 0, log_a, torch.full_like(log_a, -math.inf))
        log_target = log_target - torch.logsumexp(log_target, 0)
        kls.append(kl(log_target, log_pi))
        starts.append(kl(log_target, log_a))
    assert sum(starts) / 3 > 1.0 and sum(kls) / 3 < 0.05, (starts, kls)


def test_init_continues_from_a_saved_model_and_valid_prompts_evaluate(setting, tmp_path, capsys, monkeypatch):
    """``--init OUT/model`` starts where the run ended; ``--valid-prompts`` ranks evaluations (``--keep best``)."""
    start, prompts = setting
    first = tmp_path / "first"
    seqrl_train(capsys, monkeypatch, "kl_control", "--model", start, "--prompts", prompts, "--reward",
                "test_lm_cli:some_a", "--steps", 2, "--batch-size", 16, "--out", first)
    report = seqrl_train(capsys, monkeypatch, "kl_control", "--init", first / "model", "--prompts", prompts,
                         "--valid-prompts", prompts, "--reward", "test_lm_cli:some_a", "--steps", 2,
                         "--batch-size", 16, "--lr", 0, "--keep", "best", "--out", tmp_path / "second")
    assert report["monitor"] == "valid_reward" and report["kept"] == "best"
    saved = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "second" / "model", local_files_only=True)
    before = transformers.AutoModelForCausalLM.from_pretrained(first / "model", local_files_only=True)
    for (name, value), other in zip(saved.state_dict().items(), before.state_dict().values()):
        assert torch.equal(value, other), name  # lr 0: the saved model is the one it continued from


@pytest.mark.parametrize("argv, message", [
    (["kl_control", "--model", "gpt2", "--steps", "1"], "'gpt2' is not a local directory: seqrl never downloads"),
    (["kl_control", "--model", "{start}", "--env", "seqrl/Copy-v0", "--steps", "1"], "drop --env"),
    (["mle", "--model", "{start}", "--epochs", "1"], "mle learns from a task's references"),
    (["kl_control", "--steps", "1"], "give --env ENV (a seqrl task) or --model DIR"),
    (["gdcpp", "--model", "{start}", "--steps", "1", "--prompts", "{prompts}"], "give --scorer"),
    (["kl_control", "--model", "{start}", "--steps", "1", "--policy", "lstm"], "drop --policy"),
    (["kl_control", "--model", "{start}", "--steps", "1", "--policy-set", "max_len=-2"], "--policy-set"),
    (["gdcpp", "--model", "{start}", "--steps", "1", "--scorer", "x:y", "--potential", "x:y"], "give the target once"),
    (["kl_control", "--model", "{start}", "--steps", "1", "--prompts", "{prompts}", "--reward", "test_lm_cli:has_a",
      "--policy-set", "n_embd=-3"], "does not load with --policy-set n_embd=-3: RuntimeError"),
    (["kl_control", "--model", "{start}", "--steps", "1", "--policy-set", "temperature=0"], "temperature must be"),
])
def test_model_options_that_cannot_work_are_refused(setting, capsys, monkeypatch, argv, message):
    start, prompts = setting
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    length = [] if "--policy-set" in argv else ["--policy-set", f"max_len={MAX_LEN}"]
    code = main(["train", *[a.format(start=start, prompts=prompts) for a in argv], "--no-progress", *length])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_reinforce_learns_from_prompts_alone(setting, tmp_path, capsys, monkeypatch):
    """REINFORCE's data may be the prompts themselves (no references) with a reward of completions alone: the
    exact E_π[b(x, ·)] of every prompt rises (measured, seeds 0–2: from 0.08–0.13 to 0.998–0.999 in 20 steps)."""
    start, prompts = setting
    seqrl_train(capsys, monkeypatch, "reinforce", "--model", start, "--prompts", prompts, "--reward",
                "test_lm_cli:has_a", "--steps", 20, "--batch-size", 3, "--set", "num_samples=8", "--lr", 1e-2,
                "--out", tmp_path)
    for log_a, log_pi, has in per_prompt(start, tmp_path / "model"):
        before, after = float((log_a.exp() * has).sum()), float((log_pi.exp() * has).sum())
        assert after > before + 0.3 and after > 0.8, (before, after)


def test_reinforce_on_prompts_refuses_a_reward_that_needs_references(setting, capsys):
    start, prompts = setting
    code = main(["train", "reinforce", "--model", str(start), "--prompts", str(prompts), "--reward", "bleu",
                 "--steps", "1", "--no-progress", "--policy-set", f"max_len={MAX_LEN}"])
    err = capsys.readouterr().err
    assert code == 2 and "has no references, and its reward 'bleu' needs them" in err, err


def test_a_model_folder_whose_weights_would_run_code_is_refused_in_one_line(setting, tmp_path, capsys):
    """A pytorch_model.bin holding a pickle that calls a function is refused by name, with nothing run."""
    import shutil

    start, prompts = setting
    planted, marker = tmp_path / "planted", tmp_path / "ran"
    shutil.copytree(start, planted)
    for weights in planted.glob("*.safetensors"):
        weights.unlink()

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    torch.save({"transformer.wte.weight": Payload()}, planted / "pytorch_model.bin")
    code = main(["train", "kl_control", "--model", str(planted), "--prompts", str(prompts), "--reward",
                 "test_lm_cli:has_a", "--steps", "1", "--no-progress", "--policy-set", f"max_len={MAX_LEN}"])
    err = capsys.readouterr().err
    assert code == 2 and "a pickle that would run code, refused" in err and err.count("\n") == 1, err
    assert not marker.exists()


def test_lora_settings_peft_refuses_are_one_line_and_gpt2s_conv1d_note_is_silent(setting, capsys, monkeypatch):
    import warnings

    start, prompts = setting
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["train", "kl_control", "--model", str(start), "--prompts", str(prompts), "--reward",
                     "test_lm_cli:has_a", "--steps", "1", "--no-progress", "--policy-set", f"max_len={MAX_LEN}",
                     "--policy-set", 'lora={"r": 0}'])
    err = capsys.readouterr().err
    assert code == 2 and "`r` should be a positive integer" in err and err.count("\n") == 1, err
    assert not [w for w in caught if "fan_in_fan_out" in str(w.message)]
