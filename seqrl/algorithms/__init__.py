"""The algorithm zoo; each module registers its algorithm by name."""

from .base import (
    ALGORITHMS,
    Algorithm,
    AlgorithmConfig,
    DataConfig,
    ERPOPoint,
    Offer,
    Requirements,
    config_fields,
    register_algorithm,
)
from .build import make_algorithm, resolve_algorithm
from .cdpg import CDPG, per_prompt_log_z
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

__all__ = [
    "ALGORITHMS", "AlgorithmConfig", "DataConfig", "Offer", "Requirements", "config_fields", "resolve_algorithm",
    "erpo_token_e_step_local",
    "DPG", "GDCPP", "MLE", "Algorithm", "DPGOff", "Distill", "ERPOPoint",
    "dpg_loss", "make_algorithm", "mle_loss", "register_algorithm", "ERPO", "RAML", "Reinforce", "Mixer",
    "ScheduledSampling", "DataNoising", "SPG", "Interpolation", "erpo_e_step", "erpo_loss", "erpo_token_e_step",
    "erpo_weights", "raml_loss", "reinforce_loss", "leave_one_out_mean", "inverse_sigmoid", "unigram_distribution",
    "unigram_noise", "spg_loss", "anneal", "AC", "ERAC", "soft_td_target",
    "VAML", "soft_q_loss", "soft_q_targets", "vaml_loss", "vaml_weights",
    "KLControl", "KLControlPotential", "kl_control_loss", "kl_estimates", "penalized_reward",
    "DIVERGENCES", "FDPG", "fdpg_loss", "fdpg_weights", "f_prime", "CDPG", "per_prompt_log_z",
]
