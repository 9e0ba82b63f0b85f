"""The algorithm zoo; each module registers its algorithm by name."""

from .base import ALGORITHMS, Algorithm, ERPOPoint, config_from_kwargs, register_algorithm
from .distill import Distill
from .dpg import DPG, GDCPP, DPGOff, dpg_loss
from .mle import MLE, mle_loss


def make_algorithm(name: str, policy, **kwargs):
    """Build a registered algorithm: keyword arguments naming fields of its ``Config`` set
    the config; the others (``potential=``, ``proposal=``, ``valid=``…) go to its constructor."""
    from dataclasses import fields

    cls = ALGORITHMS.get(name)
    config_cls = getattr(cls, "Config", None)
    names = {f.name for f in fields(config_cls)} if config_cls is not None else set()
    config = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
    unknown = [k for k in kwargs if k not in _constructor_args(cls)]
    if unknown:
        raise TypeError(f"{name}: unknown config fields {sorted(unknown)}; known: {sorted(names)}")
    return cls(policy, config_from_kwargs(cls, **config), **kwargs)


def _constructor_args(cls) -> set[str]:
    import inspect

    params = inspect.signature(cls.__init__).parameters
    return {n for n, p in params.items() if p.kind == p.KEYWORD_ONLY}


__all__ = [
    "ALGORITHMS", "DPG", "GDCPP", "MLE", "Algorithm", "DPGOff", "Distill", "ERPOPoint", "config_from_kwargs",
    "dpg_loss", "make_algorithm", "mle_loss", "register_algorithm",
]
