"""The algorithm zoo; each module registers its algorithm by name."""

from .base import ALGORITHMS, Algorithm, ERPOPoint, config_from_kwargs, register_algorithm
from .mle import MLE, mle_loss


def make_algorithm(name: str, policy, **config):
    """Build a registered algorithm with its config from keyword arguments."""
    cls = ALGORITHMS.get(name)
    return cls(policy, config_from_kwargs(cls, **config))


__all__ = ["ALGORITHMS", "MLE", "Algorithm", "ERPOPoint", "config_from_kwargs", "make_algorithm", "mle_loss",
           "register_algorithm"]
