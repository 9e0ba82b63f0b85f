"""Potentials (EBMs), GAM features, Training-1 and the Monte-Carlo tools around them."""

from .base import MotifProcessPotential, Potential, PotentialError, ScoredBase, checked_log_potential
from .constraints import Constraint, ConstraintPotential, InfeasibleConstraintError
from .features import FEATURE_NAMES, FeatureMaskError, MotifFeatures, parse_mask
from .gam import GAMPotential
from .sampling import (
    BoundViolation,
    base_log_ratio,
    estimate_divergences,
    estimate_log_z,
    potential_log_ratio,
    rejection_sample,
    snis_moments,
)
from .training1 import Training1Config, Training1Result, exact_moments, fit_lambda

__all__ = [
    "Constraint", "ConstraintPotential", "InfeasibleConstraintError",
    "FEATURE_NAMES", "BoundViolation", "FeatureMaskError", "GAMPotential", "MotifFeatures", "MotifProcessPotential",
    "Potential", "PotentialError", "Training1Config", "Training1Result", "base_log_ratio", "checked_log_potential",
    "estimate_divergences", "estimate_log_z", "exact_moments", "fit_lambda", "parse_mask", "potential_log_ratio",
    "rejection_sample", "ScoredBase", "snis_moments",
]
