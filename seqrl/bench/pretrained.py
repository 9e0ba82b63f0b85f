"""The control suite's pretrained language model a(x): an LSTM trained by seqrl's own ``fit`` with
``mle`` on the generated grammar corpus (:mod:`seqrl.envs.grammar`), cached on disk.

The cache lives in ``$SEQRL_CACHE``, else ``$XDG_CACHE_HOME/seqrl``, else ``~/.cache/seqrl``; a file
is named by a hash of the configuration that made it (grammar seed, corpus size, model, epochs…), so a
changed configuration trains a new model, and loading checks the hash stored inside the file. A file
that cannot be read (a kill mid-write, a disk error) is retrained with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..algorithms import make_algorithm
from ..checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from ..envs.grammar import Grammar, grammar_fingerprint
from ..files import CodeInFileError
from ..policies import make_policy
from ..policies.base import AutoregressivePolicy
from ..training import FitConfig, fit
from ..utils import resolve_device, seed_everything

CACHE_FORMAT = 1
"""Bumped when the training recipe changes in a way the config does not show: old files are then ignored."""


@dataclass(frozen=True, kw_only=True)
class LMConfig:
    """How a(x) is made: the corpus, the LSTM and its MLE training."""

    grammar_seed: int = 0
    """Seed of the training corpus (validation uses ``grammar_seed + 1``)."""
    corpus_size: int = 12_000
    valid_size: int = 1000
    hidden_size: int = 128
    embedding_dim: int | None = 64
    num_layers: int = 1
    dropout: float = 0.0
    """No dropout: a(x) is also the policy that fine-tuning starts from, and DPG's baseline Z·π/q
    wants π(x) to be the distribution the training pass scores."""
    epochs: int = 6
    batch_size: int = 128
    lr: float = 3e-3
    seed: int = 0
    """Seed of the initialization and minibatch order."""

    def __post_init__(self) -> None:
        for name in ("corpus_size", "valid_size", "hidden_size", "num_layers", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"LMConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.embedding_dim is not None and self.embedding_dim < 1:
            raise ValueError(f"LMConfig.embedding_dim must be ≥ 1 or None, got {self.embedding_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LMConfig.dropout must be in [0, 1), got {self.dropout}")
        if not self.lr > 0:
            raise ValueError(f"LMConfig.lr must be > 0, got {self.lr}")

    def key(self) -> str:
        """sha256 of the configuration, the grammar (its words and probabilities) and the cache format: the
        cache file's identity."""
        text = json.dumps({"format": CACHE_FORMAT, "grammar": grammar_fingerprint(), **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def cache_dir() -> Path:
    """``$SEQRL_CACHE``, else ``$XDG_CACHE_HOME/seqrl``, else ``~/.cache/seqrl`` (not created here)."""
    explicit = os.environ.get("SEQRL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "seqrl"


def cache_path(config: LMConfig) -> Path:
    return cache_dir() / f"grammar_lm-{config.key()[:16]}.pt"


def new_lm(grammar: Grammar, config: LMConfig) -> AutoregressivePolicy:
    return make_policy("lstm", grammar.vocab, grammar.max_len, hidden_size=config.hidden_size,
                       num_layers=config.num_layers, dropout=config.dropout, embedding_dim=config.embedding_dim)


def train_lm(config: LMConfig, *, device: str | torch.device = "cpu", progress: bool = False
             ) -> tuple[AutoregressivePolicy, dict[str, float]]:
    """a(x) by MLE (the project's ``fit``) on the corpus; returns it (eval mode) and its validation CE."""
    grammar = Grammar()
    train = grammar.batch(config.corpus_size, config.grammar_seed)
    valid = grammar.batch(config.valid_size, config.grammar_seed + 1)
    seed_everything(config.seed)
    policy = new_lm(grammar, config)
    mle = make_algorithm("mle", policy, batch_size=config.batch_size, lr=config.lr, clip_grad_norm=1.0)
    result = fit(mle, train, valid=valid, config=FitConfig(max_epochs=config.epochs, keep="best", device=str(device),
                                                          seed=config.seed, progress=progress))
    policy.eval()
    return policy, {"valid_ce": float(result.best), "steps": float(result.steps)}


def _read(path: Path, config: LMConfig, device: str | torch.device) -> AutoregressivePolicy:
    """The cached a(x) at ``path``, or an exception saying why it cannot be used."""
    extra = read_checkpoint(path).get("extra", {})
    if extra.get("cache_key") != config.key():
        raise ValueError(f"its key {str(extra.get('cache_key'))[:16]} is not this config's {config.key()[:16]}")
    return load_checkpoint(path, device=str(device))


def load_or_train_lm(config: LMConfig | None = None, *, device: str | torch.device = "cpu", progress: bool = False,
                     echo=None) -> AutoregressivePolicy:
    """a(x) for ``config``: read from the cache when a file with its key is there, else trained and cached.

    A cache file that cannot be read or holds another key is retrained, with a warning. The returned
    policy is in eval mode with gradients off (a frozen base model)."""
    config = config or LMConfig()
    path = cache_path(config)
    policy: AutoregressivePolicy | None = None
    if path.is_file():
        try:
            policy = _read(path, config, device)
        except CodeInFileError:
            raise  # not a damaged cache but a planted file: say so, and leave it for the user to inspect
        except Exception as err:  # noqa: BLE001  (any unreadable file is rebuilt, never trusted)
            warnings.warn(f"cached language model {path} is unusable ({type(err).__name__}: {err}); retraining it",
                          stacklevel=2)
    if policy is None:
        if echo is not None:
            echo(f"training the control suite's language model a(x) (cached as {path})")
        policy, info = train_lm(config, device=device, progress=progress)
        # atomic (seqrl.files): a kill mid-write leaves no half file under the real name
        save_checkpoint(path, policy, {"cache_key": config.key(), "config": asdict(config), **info})
        policy = policy.to(resolve_device(str(device)))
    for p in policy.parameters():
        p.requires_grad_(False)
    return policy.eval()


__all__ = ["CACHE_FORMAT", "LMConfig", "cache_dir", "cache_path", "load_or_train_lm", "new_lm", "train_lm"]
