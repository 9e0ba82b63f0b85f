"""The core's third pass (issue 22): each algorithm owns its update; ``fit`` is only the loop; ``seqrl train``, the
suites and the API build an algorithm through one builder; the CLI's first hour works."""

from __future__ import annotations

import ast
import inspect
import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch

import seqrl.bench.gam  # noqa: F401  (imported before any test patches seqrl.training.fit: no stale binding)
import seqrl.bench.rows  # noqa: F401
from seqrl import exact
from seqrl.algorithms import ALGORITHMS, Offer, make_algorithm
from seqrl.checkpoint import load_checkpoint
from seqrl.cli import main
from seqrl.policies import make_policy
from seqrl.training import FitConfig, fit
from seqrl.types import SequenceBatch

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(progress=False, device="cpu")
COPY = ["--env", "seqrl/Copy-v0", "--task-set", "train_size=16", "--task-set", "valid_size=4", "--task-set",
        "test_size=4", "--task-set", "num_symbols=3", "--task-set", "max_length=3", "--policy-set", "hidden_size=8",
        "--policy-set", "embedding_dim=4", "--no-progress", "--device", "cpu"]
MOTIF = ["--env", "seqrl/Motif-v0", "--task-set", "motif=101", "--task-set", "length=6", "--task-set",
         "train_size=60", "--task-set", "test_size=30", "--policy-set", "hidden_size=8", "--policy-set",
         "num_layers=1", "--no-progress", "--device", "cpu"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def log_p_motif(batch):
    """A potential with full support on the motif task's space (a plug-in for the builder test)."""
    return (batch.tokens == 4).float().sum(1) * 0.5


# --- fit is the loop ------------------------------------------------------------------------------------------
def test_fit_is_only_the_loop():
    """``fit`` reads as the loop it is: at most 80 lines (162 before), every algorithm step in ``update``."""
    from seqrl import training

    assert len(inspect.getsource(training.fit).splitlines()) <= 80
    source = inspect.getsource(training)
    for gone in ("param_groups", "group_lr", "on_step_end(algorithm", "collect(", ".loss("):
        assert gone not in source, gone


def test_max_steps_is_never_capped_by_a_default(binary_vocab):
    """``fit(max_steps=150)`` of reinforce on one batch per epoch ran 100 steps (a default of 100 epochs)."""
    data = exact.enumerate_sequences(binary_vocab, 3).index(torch.arange(4))
    policy = make_policy("lstm", binary_vocab, 3, hidden_size=4, seed=0)
    algo = make_algorithm("reinforce", policy, reward="hamming", batch_size=64)
    assert fit(algo, data, config=FitConfig(max_steps=150, **FAST)).steps == 150
    mle = make_algorithm("mle", make_policy("lstm", binary_vocab, 3, hidden_size=4, seed=0), batch_size=2)
    assert fit(mle, data, config=FitConfig(**FAST)).steps == 200  # neither given: 100 epochs of 2 steps


def test_reward_algorithms_rank_by_the_reward_and_say_what_they_kept(binary_vocab):
    data = exact.enumerate_sequences(binary_vocab, 3).index(torch.arange(6))
    policy = make_policy("lstm", binary_vocab, 3, hidden_size=4, seed=0)
    algo = make_algorithm("reinforce", policy, reward="hamming", batch_size=6)
    result = fit(algo, data, valid=data, config=FitConfig(max_steps=4, eval_every=2, keep="best", **FAST))
    assert (result.monitor, result.mode, result.kept) == ("valid_reward", "max", "best")
    assert result.best == max(h["valid_reward"] for h in result.history)
    assert "kept the best weights by valid_reward" in result.describe()


# --- an algorithm owns its update ----------------------------------------------------------------------------
def test_the_proposal_swap_follows_the_algorithms_cadence_not_the_loops(binary_vocab):
    """DPG/GDC++ swapped q at the loop's ``eval_every`` (a logging cadence), and the swap's draws were not episodes.
    Now ``check_every`` decides, whatever the loop evaluates, and every sample drawn counts."""
    from seqrl.ebm.base import FunctionPotential

    space = exact.enumerate_sequences(binary_vocab, 4)
    potential = FunctionPotential(log_p_motif, "prefer_ones")

    def run(eval_every):
        torch.manual_seed(0)
        policy = make_policy("lstm", binary_vocab, 4, hidden_size=8, num_layers=1, dropout=0.0, seed=0)
        algo = make_algorithm("gdcpp", policy, potential=potential, samples_per_step=32, kl_samples=50,
                              check_every=3, lr=3e-2)
        result = fit(algo, None, valid=space, config=FitConfig(max_steps=9, eval_every=eval_every, **FAST))
        return algo, result, [p.detach().clone() for p in policy.parameters()]

    rare, _, weights_rare = run(1000)
    often, _, weights_often = run(1)
    assert rare.episodes == often.episodes == 9 * 32 + 3 * 50  # three checks (steps 3, 6, 9), each drew 50
    assert all(torch.equal(a, b) for a, b in zip(weights_rare, weights_often))  # logging changes no learning


def test_resumable_state_is_declared():
    """What a resumed run restores is named by each algorithm, not every attribute it happens to hold."""
    for name, cls in ALGORITHMS.items():
        assert isinstance(cls.resumable, tuple) and "steps" in cls.resumable, name


# --- one builder ------------------------------------------------------------------------------------------------
def _captured(monkeypatch):
    """Replace ``seqrl.training.fit`` (as ``seqrl train`` imports it) by one that records what it was given."""
    import seqrl.training

    seen = {}

    def fake_fit(algorithm, train=None, **kwargs):
        seen["algorithm"], seen["config"] = algorithm, kwargs["config"]
        raise KeyboardInterrupt  # stop before training: what was built is what the test compares

    monkeypatch.setattr(seqrl.training, "fit", fake_fit)
    return seen


@pytest.mark.parametrize("name", sorted(ALGORITHMS.names()))
def test_seqrl_train_and_the_api_build_the_same_algorithm(name, monkeypatch, capsys, tmp_path):
    """Every registered algorithm: ``seqrl train NAME`` builds the config the API's ``make_algorithm`` builds for
    the same offer and settings (GDC++ unclipped under both: it clipped at 1.0 under ``seqrl train`` only)."""
    from seqrl.envs import task_for_env

    cls = ALGORITHMS.get(name)
    seen = _captured(monkeypatch)
    env = MOTIF if cls.requires.potential or not cls.uses_data else COPY
    extra = ["--potential", "test_core_third_pass:log_p_motif"] if cls.requires.potential else []
    settings = {"log_bound": 5.0} if name == "distill" else {}
    extra += [f"--set={k}={v}" for k, v in settings.items()]
    if cls.requires.prompts:
        (tmp_path / "prompts.txt").write_text("1 0\n0 1 1\n")
        extra += ["--prompts", str(tmp_path / "prompts.txt")]
    code, _, err = run_cli(capsys, "train", name, *env, *extra, "--steps", "3")
    assert code == 130, err  # the fake fit's stop
    built = seen["algorithm"]
    task_kwargs = dict(a.split("=") for a, before in zip(env[1:], env) if before == "--task-set")
    task = task_for_env(env[1], **{k: (v if k == "motif" else int(v)) for k, v in task_kwargs.items()})
    prompted = cls.requires.prompts
    policy = make_policy("seq2seq" if task.is_conditional or prompted else "lstm", task.vocab, task.max_len,
                         source_vocab=task.source_vocab or (task.vocab if prompted else None), **built.policy.config)
    offer = Offer(train=None if prompted else task.split("train"), valid=None if prompted else task.split("valid"),
                  steps=3, from_scratch=True, potential=getattr(built, "potential", None),
                  proposal=policy if cls.requires.potential else None,
                  prompts=SequenceBatch.from_lists([[4, 3], [3, 4, 4]]) if prompted else None)
    again = make_algorithm(name, policy, offer, **settings)
    assert again.config == built.config, name
    if name == "gdcpp":
        assert built.config.clip_grad_norm is None
    assert seen["config"].max_steps == 3


def test_a_suite_row_and_seqrl_train_build_gdcpp_alike(monkeypatch):
    """The GAM suite's Training-2 row keeps GDC++'s own (unclipped) setting while it sets the sampling algorithms'
    common clipping; dpg_off takes the suite's."""
    from seqrl.bench.gam import QUICK_SETTINGS, training2_row
    from seqrl.bench.rows import suite_defaults

    assert suite_defaults("gdcpp", lr=1e-2, clip_grad_norm=0.25) == {"lr": 1e-2}
    assert suite_defaults("dpg_off", lr=1e-2, clip_grad_norm=0.25) == {"lr": 1e-2, "clip_grad_norm": 0.25}
    assert suite_defaults("erac", lr=3e-4) == {}  # Table 6's rates are ERAC's own
    from seqrl.envs import MotifTask

    task = MotifTask("101", 6, train_size=10, test_size=10)
    row = training2_row("gdcpp", task, None, type("G", (), {"potential": None})(), QUICK_SETTINGS)  # type: ignore
    assert "clip_grad_norm" not in row.settings and row.settings["check_every"] == QUICK_SETTINGS.eval_every


# --- the CLI's first hour -----------------------------------------------------------------------------------
def test_train_init_continues_from_a_saved_policy(capsys, tmp_path):
    assert run_cli(capsys, "train", "mle", *COPY, "--epochs", "2", "--out", tmp_path / "mle")[0] == 0
    saved = load_checkpoint(tmp_path / "mle" / "policy.pt").state_dict()
    no_policy = [a for a, before in zip(COPY, [None, *COPY]) if "--policy-set" not in (a, before)]
    code, out, err = run_cli(capsys, "train", "reinforce", *no_policy, "--init",
                             tmp_path / "mle" / "policy.pt", "--reward", "hamming", "--steps", "1", "--lr", "0",
                             "--out", tmp_path / "rl")
    assert code == 0, err
    report = json.loads(out)
    after = load_checkpoint(tmp_path / "rl" / "policy.pt").state_dict()
    assert all(torch.equal(saved[k], after[k]) for k in saved)  # lr 0: the saved policy itself
    assert "test_reward" in report and report["monitor"] == "valid_reward"
    assert run_cli(capsys, "train", "mle", *COPY, "--init", tmp_path / "nope.pt")[0] == 2
    code, _, err = run_cli(capsys, "train", "mle", "--env", "seqrl/Reverse-v0", "--task-set", "num_symbols=5",
                           "--init", tmp_path / "mle" / "policy.pt", "--no-progress")
    assert code == 2 and "its vocabulary" in err


def test_train_dpg_on_the_motif_env_works_out_of_the_box(capsys, tmp_path):
    """r is trained first (as the suite does), λ fitted, then π trained toward P_λ; it evaluates at the end."""
    code, out, err = run_cli(capsys, "train", "dpg_off", *MOTIF, "--steps", "4", "--batch-size", "32",
                             "--eval-every", "2", "--out", tmp_path)
    assert code == 0, err
    assert "training r by MLE" in err and "fitting λ" in err
    report = json.loads(out)
    assert report["steps"] == 4 and math.isfinite(report["final_evaluation"]["valid_ce"])
    assert report["kept"] == "last" and report["final_evaluation"]["step"] == 4
    code, _, err = run_cli(capsys, "train", "dpg_off", *MOTIF)
    assert code == 2 and "give --steps N" in err


def test_keep_best_on_the_command_line(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "train", "mle", *COPY, "--epochs", "3", "--eval-every", "1", "--keep", "best")
    report = json.loads(out)
    assert code == 0 and report["kept"] == "best" and report["summary"].startswith("kept the best weights by valid_ce")


USER_ALGO = '''
from dataclasses import dataclass

from seqrl.algorithms import Algorithm, DataConfig, Requirements
from seqrl.algorithms.mle import mle_loss


class HalfMLE(Algorithm):
    """MLE at half the learning rate: a user's algorithm, never registered."""

    requires = Requirements(from_scratch=True)

    @dataclass(frozen=True, kw_only=True)
    class Config(DataConfig):
        scale: float = 0.5

    def __init__(self, policy, config=None):
        super().__init__(policy, config)
        self.policy_optimizer()

    def update(self, batch):
        loss = self.config.scale * mle_loss(self.policy.token_log_probs(batch), batch.mask_t)
        return self.optimize(loss)
'''


def test_a_users_algorithm_as_module_colon_class(capsys, tmp_path, monkeypatch):
    (tmp_path / "useralgo.py").write_text(USER_ALGO)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = run_cli(capsys, "train", "useralgo:HalfMLE", *COPY, "--epochs", "1", "--set", "scale=0.25")
    assert code == 0, err and json.loads(out)["algorithm"] == "useralgo:HalfMLE"
    code, _, err = run_cli(capsys, "bench", "seq2seq", "--quick", "--seeds", "0", "--algos", "useralgo:HalfMLE",
                           "--set", "train_size=16", "--set", "valid_size=4", "--set", "test_size=4",
                           "--set", "mle_epochs=1", "--set", "finetune_epochs=1", "--set", "hidden_size=8",
                           "--set", "reward=hamming", "--out", tmp_path / "b", "--no-progress", "--device", "cpu")
    assert code == 0, err
    runs = json.loads((tmp_path / "b" / "results.json").read_text())["runs"]
    assert [r["algorithm"] for r in runs] == ["mle_pretrained", "useralgo:HalfMLE"]
    ALGORITHMS.unregister("useralgo:HalfMLE")


def test_list_json_gives_every_config_field_and_a_summary(capsys):
    code, out, _ = run_cli(capsys, "list", "--json")
    details = json.loads(out)["algorithm_details"]
    assert code == 0 and set(details) == set(ALGORITHMS.names())
    for name, info in details.items():
        assert info["summary"] and "\n" not in info["summary"], name
        fields = info["config"]
        assert {"lr", "clip_grad_norm"} <= set(fields), name
        assert all({"type", "default", "doc"} == set(f) for f in fields.values())
    erac = details["erac"]["config"]
    assert erac["lr"]["default"] == 1e-4 and "Table 6" in erac["lr"]["doc"] and erac["tau"]["type"] == "float"


def test_threads_and_workers_never_oversubscribe_the_cores(capsys, monkeypatch):
    from seqrl.cli import common

    monkeypatch.setattr(common, "cores", lambda: 2)
    code, _, err = run_cli(capsys, "bench", "gam", "--workers", "2", "--threads", "2", "--quick")
    assert code == 2 and "--workers 2 × --threads 2 = 4 exceeds the 2 CPU cores" in err
    code, _, err = run_cli(capsys, "bench", "gam", "--workers", "3", "--quick")
    assert code == 2 and "exceeds the 2 CPU cores" in err
    code, _, err = run_cli(capsys, "train", "mle", *COPY, "--threads", "3", "--epochs", "1")
    assert code == 2 and "--threads 3 = 3 exceeds" in err


# --- structure ----------------------------------------------------------------------------------------------
def _imports(path: Path, package: str) -> set[str]:
    """The seqrl modules a file imports, function-level imports included, TYPE_CHECKING blocks too."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("seqrl"):
                found.add(module)
                found.update(f"{module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("seqrl"))
    return found


def test_no_import_cycles_in_seqrl():
    modules: dict[str, Path] = {}
    for path in (ROOT / "seqrl").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = {m for m in _imports(path, package + ".x") if m in modules and m != name}
    # package faces (__init__ re-exports) are left out, as the project's import-cycle tool does
    faces = {n for n, p in modules.items() if p.name == "__init__.py"}
    graph = {n: {m for m in deps if m not in faces} for n, deps in graph.items() if n not in faces}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, cycles


def test_no_suite_module_is_over_400_lines_and_no_outside_design_file_is_cited():
    for path in [*(ROOT / "seqrl" / "bench").rglob("*.py")]:
        assert len(path.read_text().splitlines()) <= 400, path
    for path in (ROOT / "seqrl").rglob("*.py"):
        assert "DESIGN.md" not in path.read_text(), path


def _architecture_example() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]


def test_the_algorithm_contract_fits_one_screen_and_its_example_runs_by_registration_alone(capsys, tmp_path):
    text = (ROOT / "docs" / "architecture.md").read_text()
    contract = re.search(r"```text\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]
    assert len(contract.splitlines()) <= 30
    source = _architecture_example()
    body = [line for line in source.splitlines() if line.strip() and not line.startswith(("from", "import"))]
    assert len(body) <= 30
    (tmp_path / "architecture_example.py").write_text(source)
    sys.path.insert(0, str(tmp_path))
    try:
        import architecture_example  # noqa: F401  (its import registers "rwr")


        code, out, err = run_cli(capsys, "train", "rwr", *COPY, "--epochs", "1", "--reward", "hamming")
        assert code == 0, err
        code, _, err = run_cli(capsys, "bench", "seq2seq", "--quick", "--seeds", "0", "--algos", "rwr",
                               "--set", "train_size=16", "--set", "valid_size=4", "--set", "test_size=4",
                               "--set", "mle_epochs=1", "--set", "finetune_epochs=1", "--set", "hidden_size=8",
                               "--set", "reward=hamming", "--out", tmp_path / "b", "--no-progress", "--device",
                               "cpu")
        assert code == 0, err
        runs = json.loads((tmp_path / "b" / "results.json").read_text())["runs"]
        assert [r["algorithm"] for r in runs] == ["mle_pretrained", "rwr"]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("architecture_example", None)
        if "rwr" in ALGORITHMS:
            ALGORITHMS.unregister("rwr")
