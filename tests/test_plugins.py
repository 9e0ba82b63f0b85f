"""Plug-ins three ways: a reward, a potential and an environment by (a) a decorator in the user's code,
(b) the entry-point groups of an installed package (tests/plugin_pkg, installed offline for the test),
(c) ``module:function`` on the command line. Misbehaving plug-ins get one-line errors naming them."""

from __future__ import annotations

import configparser
import importlib
import shutil
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import seqrl
from seqrl.cli import main
from seqrl.ebm.base import POTENTIALS, PotentialError, checked_log_potential, make_potential
from seqrl.envs import ENV_IDS, TASKS, SequenceEnv, make_task
from seqrl.registry import PluginError, load_object
from seqrl.rewards.base import REWARDS, RewardError, compute_reward, make_reward
from seqrl.types import SequenceBatch, Vocab

PLUGIN_PKG = Path(__file__).parent / "plugin_pkg"
PLUGIN_MODULE = "seqrl_plugin_example"
REGISTRIES = (REWARDS, POTENTIALS, TASKS)
TINY = ["--steps", "2", "--batch-size", "8", "--policy-set", "hidden_size=8", "--policy-set", "num_layers=1",
        "--no-progress"]
DPG_TINY = ["--set", "kl_samples=16"]  # with TINY's --batch-size 8: 8 samples per step, dpg's one batch


def install_offline(package: Path, site: Path) -> None:
    """What ``pip install --target site package`` leaves, written directly (no network, no build): the
    package's modules and a dist-info whose entry_points.txt is the setup.cfg's [options.entry_points]."""
    cfg = configparser.ConfigParser()
    cfg.read(package / "setup.cfg")
    name, version = cfg["metadata"]["name"], cfg["metadata"]["version"]
    for module in cfg["options"]["packages"].split():
        shutil.copytree(package / module, site / module)
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    groups = configparser.ConfigParser()
    for group, lines in cfg["options.entry_points"].items():
        groups[group] = dict(line.split("=", 1) for line in lines.strip().splitlines())
    with open(dist_info / "entry_points.txt", "w") as f:
        groups.write(f)


def _forget_module(name: str) -> None:
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """tests/plugin_pkg installed into a fresh site directory on sys.path for this module's tests."""
    site = tmp_path_factory.mktemp("site")
    install_offline(PLUGIN_PKG, site)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    for registry in REGISTRIES:
        registry.reload_plugins()
    yield site
    sys.path.remove(str(site))
    _forget_module(PLUGIN_MODULE)
    importlib.invalidate_caches()
    for registry in REGISTRIES:
        registry.reload_plugins()


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A current directory holding the user's own module, not on sys.path (as with the console script)."""
    (tmp_path / "my_plugins.py").write_text(textwrap.dedent('''
        import math
        import torch

        def count_symbol(hyps, refs=None):
            return (hyps.tokens == 3).sum(1).float()

        def log_p(batch):
            return (batch.tokens == 3).sum(1).float() - batch.lengths.float()

        def wrong_shape(hyps, refs=None):
            return torch.zeros(hyps.batch_size, 2)

        def nan_reward(hyps, refs=None):
            return torch.full((hyps.batch_size,), math.nan)

        def raising(hyps, refs=None):
            raise ZeroDivisionError("the user's bug")

        def not_a_tensor(hyps, refs=None):
            return "high"

        def nan_potential(batch):
            return torch.full((batch.batch_size,), math.nan)

        def raising_potential(batch):
            raise KeyError("lookup failed")

        def list_potential(batch):
            return [0.0] * batch.batch_size

        def short_potential(batch):
            return torch.zeros(1)
    '''))
    monkeypatch.chdir(tmp_path)
    assert str(tmp_path) not in sys.path
    yield tmp_path
    _forget_module("my_plugins")
    for registry in (REWARDS, POTENTIALS):
        for name in [n for n in registry.names() if n.startswith("my_plugins:")]:
            registry.unregister(name)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.err


# --- (a) decorators in the user's code ---------------------------------------------------------------------------


@pytest.fixture
def decorated():
    """A user's reward, potential and environment registered with seqrl's decorators (removed afterwards)."""
    from seqrl.envs.tasks import SPLITS, Task

    vocab = Vocab(["x", "y"])

    @seqrl.register_reward("ends_with_y")
    def ends_with_y(hyps, refs=None):
        last = hyps.tokens.gather(1, (hyps.lengths - 2).clamp(min=0)[:, None]).squeeze(1)
        return ((last == vocab.stoi["y"]) & (hyps.lengths > 1)).float()

    @seqrl.register_potential("prefer_y")
    def prefer_y(batch):
        return (batch.tokens == vocab.stoi["y"]).sum(1).float()

    @seqrl.register_env("tiny_xy")
    class TinyXY(Task):
        default_reward = "ends_with_y"

        def __init__(self, max_len: int = 3) -> None:
            self.vocab, self.source_vocab, self.max_len = vocab, None, max_len

        def split(self, name: str) -> SequenceBatch:
            assert name in SPLITS
            return SequenceBatch.from_strings(["x y", "y", "", "x x"], vocab)

    assert ends_with_y.__name__ == "ends_with_y" and TinyXY.__name__ == "TinyXY"  # decorators return their target
    yield vocab
    REWARDS.unregister("ends_with_y")
    POTENTIALS.unregister("prefer_y")
    TASKS.unregister("tiny_xy")
    del ENV_IDS["seqrl/tiny_xy"]
    gym.registry.pop("seqrl/tiny_xy")


def test_decorated_plugins_train_from_the_cli(decorated, capsys):
    code, err = run_cli(["train", "reinforce", "--env", "tiny_xy", "--reward", "ends_with_y", *TINY], capsys)
    assert code == 0, err
    code, err = run_cli(["train", "dpg", "--env", "tiny_xy", "--potential", "prefer_y", *DPG_TINY, *TINY], capsys)
    assert code == 0, err
    code, err = run_cli(["train", "reinforce", "--env", "tiny_xy", "--set", "reward=ends_with_y", *TINY], capsys)
    assert code == 0, err


def test_decorated_plugins_from_python(decorated):
    vocab = decorated
    batch = SequenceBatch.from_strings(["x y", "y x", ""], vocab)
    assert compute_reward(make_reward("ends_with_y", vocab), batch).tolist() == [1.0, 0.0, 0.0]
    assert checked_log_potential(make_potential("prefer_y", vocab), batch).tolist() == [1.0, 1.0, 0.0]
    env = gym.make("seqrl/tiny_xy")  # the default reward is the task's: the decorated one
    env.reset(seed=0)
    _, reward, terminated, _, _ = env.step(vocab.stoi["y"])
    assert reward == 1.0 and not terminated
    assert "tiny_xy" in seqrl.envs.TASKS and "ends_with_y" in REWARDS.names()


def test_registering_a_name_twice_is_an_error_but_the_same_object_again_is_not(decorated):
    fn = REWARDS._given["ends_with_y"]
    seqrl.register_reward("ends_with_y")(fn)  # the same function again (a re-imported module): no error
    with pytest.raises(ValueError, match="reward 'ends_with_y' is already registered"):
        seqrl.register_reward("ends_with_y")(lambda hyps: hyps.lengths.float())


# --- (b) entry points of an installed package --------------------------------------------------------------------


def test_entry_point_plugins_are_listed_and_loaded_lazily(installed, capsys):
    assert PLUGIN_MODULE not in sys.modules  # listing names imports nothing
    assert "count_a" in REWARDS.names() and "prefer_a" in POTENTIALS.names() and "tiny_abc" in TASKS.names()
    assert PLUGIN_MODULE not in sys.modules
    task = make_task("tiny_abc")
    assert PLUGIN_MODULE in sys.modules
    batch = SequenceBatch.from_strings(["a a", "b", ""], task.vocab)
    assert compute_reward(make_reward("count_a", task.vocab), batch).tolist() == [2.0, 0.0, 0.0]
    assert make_potential("prefer_a", task.vocab).log_potential(batch).tolist() == [-1.0, -2.0, -1.0]
    env = SequenceEnv("tiny_abc")  # its default reward comes from the same package
    env.reset(seed=0)
    assert env.step(task.vocab.stoi["a"])[1] == 1.0
    assert gym.make("seqrl/Sequence-v0", task="tiny_abc").unwrapped.task.vocab == task.vocab
    assert main(["list", "--json"]) == 0 and '"count_a"' in capsys.readouterr().out


def test_entry_point_plugins_train_from_the_cli(installed, capsys):
    code, err = run_cli(["train", "reinforce", "--env", "tiny_abc", "--reward", "count_a", *TINY], capsys)
    assert code == 0, err
    code, err = run_cli(["train", "dpg", "--env", "tiny_abc", "--potential", "prefer_a", *DPG_TINY, *TINY], capsys)
    assert code == 0, err


def test_a_broken_entry_point_is_named(installed, tmp_path):
    site = tmp_path / "broken_site"
    site.mkdir()
    (site / "broken_plugin.py").write_text("raise RuntimeError('cannot start')\n")
    dist = site / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[seqrl.rewards]\nbroken = broken_plugin:score\n")
    sys.path.insert(0, str(site))
    REWARDS.reload_plugins()
    try:
        assert "broken" in REWARDS.names() and "bleu" in REWARDS.names()  # a broken plug-in breaks nothing else
        with pytest.raises(PluginError, match=r"reward plug-in 'broken' \(entry point broken_plugin:score in group "
                                              r"seqrl.rewards\) failed to load: RuntimeError: cannot start"):
            make_reward("broken", Vocab(["a"]))
    finally:
        sys.path.remove(str(site))
        _forget_module("broken_plugin")
        REWARDS.reload_plugins()


# --- (c) module:function on the command line ---------------------------------------------------------------------


def test_module_function_plugins_train_from_the_cli(user_dir, capsys):
    copy = ["--env", "seqrl/Copy-v0", "--task-set", "train_size=16", "--task-set", "valid_size=8",
            "--task-set", "test_size=8", "--task-set", "max_length=3"]
    code, err = run_cli(["train", "reinforce", *copy, "--reward", "my_plugins:count_symbol", *TINY], capsys)
    assert code == 0, err
    motif = ["--env", "seqrl/Motif-v0", "--task-set", "motif=11", "--task-set", "length=4",
             "--task-set", "train_size=16", "--task-set", "test_size=16"]
    code, err = run_cli(["train", "dpg", *motif, "--potential", "my_plugins:log_p", *DPG_TINY, *TINY], capsys)
    assert code == 0, err
    assert str(user_dir) in sys.path  # found in the current directory


def test_module_function_in_python(user_dir):
    vocab = Vocab(["a", "b"])
    batch = SequenceBatch.from_strings(["a a", "b"], vocab)
    reward = make_reward("my_plugins:count_symbol", vocab)
    assert compute_reward(reward, batch).tolist() == [2.0, 0.0]
    assert reward.needs_reference is False
    assert load_object("my_plugins:log_p")(batch).tolist() == [-1.0, -2.0]


# --- misbehaving plug-ins: one line naming the plug-in and what it returned, exit 2 ---------------------------------


@pytest.mark.parametrize("function, message", [
    ("wrong_shape", r"reward 'my_plugins:wrong_shape' returned shape \(8, 2\), expected \[B\]=\(8,\)"),
    ("nan_reward", r"reward 'my_plugins:nan_reward' holds non-finite values at 8 of 8 entries .*nan"),
    ("raising", r"reward 'my_plugins:raising' raised ZeroDivisionError: the user's bug"),
    ("not_a_tensor", r"reward 'my_plugins:not_a_tensor' returned str 'high'; expected a \[B\]=\(8,\) float tensor"),
    ("missing", r"reward 'my_plugins:missing': module 'my_plugins' has no attribute 'missing'"),
])
def test_bad_reward_plugins_exit_2_naming_them(user_dir, capsys, function, message):
    code, err = run_cli(["train", "reinforce", "--env", "seqrl/Copy-v0", "--task-set", "train_size=16",
                         "--reward", f"my_plugins:{function}", *TINY], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqrl: error: "), err
    assert __import__("re").search(message, lines[0]), lines[0]


def test_unknown_module_and_malformed_names(user_dir, capsys):
    code, err = run_cli(["train", "reinforce", "--env", "seqrl/Copy-v0", "--reward", "nomodule:f", *TINY], capsys)
    assert code == 2 and "reward 'nomodule:f': no module named 'nomodule'" in err and len(err.splitlines()) == 1
    code, err = run_cli(["train", "reinforce", "--env", "seqrl/Copy-v0", "--reward", "nosuchreward", *TINY], capsys)
    assert code == 2 and "unknown reward 'nosuchreward'; known: bleu" in err
    code, err = run_cli(["train", "dpg", "--env", "seqrl/Motif-v0", "--potential", "nomodule:f", *TINY], capsys)
    assert code == 2 and "potential 'nomodule:f': no module named 'nomodule'" in err
    code, err = run_cli(["train", "dpg", "--env", "seqrl/Motif-v0", "--reward", "my_plugins:count_symbol"], capsys)
    assert code == 2 and "--reward: dpg takes no reward (it trains toward a potential: use --potential)" in err
    code, err = run_cli(["train", "mle", "--env", "seqrl/Copy-v0", "--potential", "my_plugins:log_p"], capsys)
    assert code == 2 and "--potential: mle takes no potential" in err
    code, err = run_cli(["train", "reinforce", "--env", "seqrl/Copy-v0", "--reward", "bleu", "--set",
                         "reward=bleu"], capsys)
    assert code == 2 and "give the reward once" in err
    with pytest.raises(PluginError, match="expected module:function"):
        load_object("my_plugins:")


def test_an_importing_module_that_fails_is_named(user_dir, capsys):
    (user_dir / "bad_import.py").write_text("import torch\nraise ImportError('needs a GPU library')\n")
    code, err = run_cli(["train", "reinforce", "--env", "seqrl/Copy-v0", "--reward", "bad_import:f", *TINY], capsys)
    assert code == 2
    assert "reward 'bad_import:f': importing 'bad_import' raised ImportError: needs a GPU library" in err
    _forget_module("bad_import")


@pytest.mark.parametrize("function, message", [
    ("nan_potential", r"potential 'my_plugins:nan_potential': log_potential returned NaN or \+inf at 8 of 8"),
    ("raising_potential", r"potential 'my_plugins:raising_potential': log_potential raised KeyError: "
                          r"'lookup failed'"),
    ("list_potential", r"potential 'my_plugins:list_potential': log_potential returned list \[0.0"),
    ("short_potential", r"potential 'my_plugins:short_potential': log_potential returned shape \(1,\), "
                        r"expected \(8,\)"),
])
def test_bad_potential_plugins_exit_2_naming_them(user_dir, capsys, function, message):
    code, err = run_cli(["train", "dpg", "--env", "seqrl/Motif-v0", "--task-set", "motif=11", "--task-set", "length=4",
                         "--task-set", "train_size=16", "--potential", f"my_plugins:{function}", *DPG_TINY, *TINY],
                        capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and __import__("re").search(message, lines[0]), err


def test_bad_plugins_registered_by_decorator_name_their_module():
    vocab = Vocab(["a"])
    batch = SequenceBatch.from_strings(["a", ""], vocab)

    @seqrl.register_reward("tmp_bad_shape")
    def bad(hyps, refs=None):
        return torch.zeros(3)

    @seqrl.register_potential("tmp_raises")
    def raises(batch):
        raise ValueError("boom")

    try:
        with pytest.raises(RewardError, match=r"reward 'tmp_bad_shape' returned shape \(3,\), expected \[B\]=\(2,\) "
                                              r"\(plug-in test_plugins:.*bad\)"):
            compute_reward(make_reward("tmp_bad_shape", vocab), batch)
        with pytest.raises(PotentialError, match=r"potential 'tmp_raises' \(plug-in test_plugins:.*raises\): "
                                                 r"log_potential raised ValueError: boom"):
            checked_log_potential(make_potential("tmp_raises", vocab), batch)
        with pytest.raises(RewardError, match="is a plain function: it takes no settings"):
            make_reward("tmp_bad_shape", vocab, scale=2)
    finally:
        REWARDS.unregister("tmp_bad_shape")
        POTENTIALS.unregister("tmp_raises")


# --- seqrl bench: the suite's reward -----------------------------------------------------------------------------


def test_bench_reward_option(user_dir, capsys, tmp_path):
    out = str(tmp_path / "bench")
    code, err = run_cli(["bench", "seq2seq", "--quick", "--out", out, "--reward", "nomodule:f"], capsys)
    assert code == 2 and "reward 'nomodule:f': no module named 'nomodule'" in err
    code, err = run_cli(["bench", "gam", "--quick", "--out", out, "--reward", "my_plugins:count_symbol"], capsys)
    assert code == 2 and "--reward does not apply to suite 'gam'" in err
    code, err = run_cli(["bench", "seq2seq", "--quick", "--out", out, "--reward", "bleu", "--set", "reward=bleu"],
                        capsys)
    assert code == 2 and "give the reward once" in err
