"""Rewards: R(y; y*) → [B], their token-level form ΔR, and a registry by name."""

from . import builtin as _builtin  # noqa: F401  (registers the built-ins)
from .base import (
    REWARDS,
    BaseReward,
    Reward,
    RewardError,
    candidate_rewards,
    compute_reward,
    make_reward,
    prefixes_with_eos,
    register_reward,
    token_rewards,
)
from .builtin import (
    BleuReward,
    DeltaReward,
    EditReward,
    HammingReward,
    MotifReward,
    PotentialReward,
    RougeReward,
    WeightedReward,
    levenshtein,
    motif_presence,
)
from .classifier import ClassifierReward, classifier

__all__ = [
    "REWARDS", "BaseReward", "candidate_rewards", "BleuReward", "ClassifierReward", "classifier", "DeltaReward",
    "EditReward", "HammingReward", "MotifReward",
    "PotentialReward", "Reward", "RewardError", "RougeReward", "WeightedReward", "compute_reward",
    "levenshtein", "make_reward", "motif_presence", "prefixes_with_eos", "register_reward", "token_rewards",
]
