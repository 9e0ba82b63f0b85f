"""seqrl: training algorithms for sequence generators, side by side.

One policy interface, one reward protocol, one token-level environment API (gymnasium),
one training loop, exact enumeration for proofs, and one comparative benchmark.
"""

from . import envs, proposals  # noqa: E402  (envs registers the gymnasium ids)
from ._version import __version__  # noqa: F401  (seqrl.__version__)
from .algorithms import ALGORITHMS, MLE, Algorithm, ERPOPoint, make_algorithm, register_algorithm  # noqa: E402
from .checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from .ebm.base import (  # noqa: E402
    POTENTIALS,
    Potential,
    PotentialError,
    checked_log_potential,
    make_potential,
    register_potential,
)
from .envs import (  # noqa: E402
    CopyTask,
    MotifTask,
    ReverseTask,
    SequenceEnv,
    TextPairTask,
    ToyTranslationTask,
    make_task,
    register_env,
    rollout,
)
from .policies import (  # noqa: E402
    POLICIES,
    GRUPolicy,
    LSTMPolicy,
    Policy,
    Samples,
    Seq2SeqPolicy,
    TransformerPolicy,
    make_policy,
)
from .registry import PluginError  # noqa: E402
from .rewards import REWARDS, Reward, compute_reward, make_reward, register_reward, token_rewards  # noqa: E402
from .training import Callback, FitConfig, FitResult, fit  # noqa: E402
from .types import SequenceBatch, Vocab  # noqa: E402
from .utils import resolve_device, seed_everything  # noqa: E402

__all__ = [
    "ALGORITHMS", "POLICIES", "envs", "proposals", "REWARDS", "Algorithm", "Callback", "CopyTask", "ERPOPoint",
    "FitConfig",
    "FitResult",
    "GRUPolicy", "LSTMPolicy", "MLE", "MotifTask", "Policy", "Potential", "PotentialError", "ReverseTask", "Reward",
    "Samples", "Seq2SeqPolicy", "SequenceBatch", "SequenceEnv", "TextPairTask", "ToyTranslationTask",
    "TransformerPolicy", "Vocab", "checked_log_potential", "compute_reward", "fit", "load_checkpoint",
    "make_algorithm", "make_policy", "make_reward", "make_task", "register_algorithm", "register_reward",
    "resolve_device", "rollout", "save_checkpoint", "seed_everything", "token_rewards",
    "POTENTIALS", "PluginError", "make_potential", "register_env", "register_potential",
]
