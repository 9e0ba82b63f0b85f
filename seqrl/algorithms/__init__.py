"""The algorithm zoo; each module registers its algorithm by name."""

from .base import (
    ALGORITHMS,
    Algorithm,
    ERPOPoint,
    ParamGroup,
    Requirements,
    RunContext,
    config_from_kwargs,
    register_algorithm,
)
from .data_noising import DataNoising, unigram_distribution, unigram_noise
from .distill import Distill
from .dpg import DPG, GDCPP, DPGOff, dpg_loss
from .erac import AC, ERAC, soft_td_target
from .erpo import (
    ERPO,
    RAML,
    erpo_e_step,
    erpo_loss,
    erpo_token_e_step,
    erpo_token_e_step_local,
    erpo_weights,
    raml_loss,
)
from .fdpg import DIVERGENCES, FDPG, f_prime, fdpg_loss, fdpg_weights
from .interpolation import Interpolation, anneal
from .kl_control import KLControl, KLControlPotential, kl_control_loss, kl_estimates, penalized_reward
from .mixer import Mixer
from .mle import MLE, mle_loss
from .reinforce import Reinforce, leave_one_out_mean, reinforce_loss
from .scheduled_sampling import ScheduledSampling, inverse_sigmoid
from .spg import SPG, spg_loss
from .vaml import VAML, soft_q_loss, soft_q_targets, vaml_loss, vaml_weights


def make_algorithm(name: str, policy, **kwargs):
    """Build a registered algorithm: keyword arguments naming fields of its ``Config`` set
    the config; the others (``potential=``, ``proposal=``, ``valid=``…) go to its constructor."""
    from dataclasses import fields

    cls = ALGORITHMS.get(name)
    config_cls = getattr(cls, "Config", None)
    names = {f.name for f in fields(config_cls)} if config_cls is not None else set()
    ctor = _constructor_args(cls)
    plain = (str, int, float, bool, tuple, type(None))
    # A name that is both a config field and a constructor argument (``reward``): a plain value
    # (a registered name) configures, an object (a Reward instance) is handed to the constructor.
    config = {k: kwargs.pop(k) for k in list(kwargs) if k in names and (k not in ctor or isinstance(kwargs[k], plain))}
    unknown = [k for k in kwargs if k not in ctor]
    if unknown:
        raise TypeError(f"{name}: unknown config fields {sorted(unknown)}; known: {sorted(names)}")
    return cls(policy, config_from_kwargs(cls, **config), **kwargs)


def _constructor_args(cls) -> set[str]:
    import inspect

    params = inspect.signature(cls.__init__).parameters
    return {n for n, p in params.items() if p.kind == p.KEYWORD_ONLY}


__all__ = [
    "ALGORITHMS", "ParamGroup", "Requirements", "RunContext", "erpo_token_e_step_local",
    "DPG", "GDCPP", "MLE", "Algorithm", "DPGOff", "Distill", "ERPOPoint", "config_from_kwargs",
    "dpg_loss", "make_algorithm", "mle_loss", "register_algorithm", "ERPO", "RAML", "Reinforce", "Mixer",
    "ScheduledSampling", "DataNoising", "SPG", "Interpolation", "erpo_e_step", "erpo_loss", "erpo_token_e_step",
    "erpo_weights", "raml_loss", "reinforce_loss", "leave_one_out_mean", "inverse_sigmoid", "unigram_distribution",
    "unigram_noise", "spg_loss", "anneal", "AC", "ERAC", "soft_td_target",
    "VAML", "soft_q_loss", "soft_q_targets", "vaml_loss", "vaml_weights",
    "KLControl", "KLControlPotential", "kl_control_loss", "kl_estimates", "penalized_reward",
    "DIVERGENCES", "FDPG", "fdpg_loss", "fdpg_weights", "f_prime",
]
