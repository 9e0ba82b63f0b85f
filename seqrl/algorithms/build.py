"""The one builder: ``seqrl train``, every suite and the API make an algorithm from (name, settings, what the run
offers) through :func:`make_algorithm`, so one name and one offer give one algorithm wherever it is built.

Settings come from three places, later ones winning: the algorithm's ``Config`` defaults (its canonical
settings, the same everywhere), :meth:`Algorithm.defaults_for` (settings that follow from what the run offers:
the length of an epoch, the budget, the training data), and the caller's explicit settings (a suite's protocol,
``--set``). Objects the run offers (a reward object, the potential, the proposal, validation data) go to the
constructor where it takes them.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from ..registry import PluginError
from .base import ALGORITHMS, Algorithm, Offer, config_fields

_PLAIN = (str, int, float, bool, tuple, type(None))
_OFFERED = ("reward", "potential", "proposal", "valid", "prompts")


def resolve_algorithm(name: str | type[Algorithm]) -> type[Algorithm]:
    """A registered name, a ``module:Class`` (a user's algorithm, imported as rewards are), or the class itself."""
    cls = ALGORITHMS.get(name) if isinstance(name, str) else name
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise PluginError(f"algorithm {name!r} is {cls!r}, not a seqrl Algorithm subclass")
    if isinstance(name, str) and ":" in name and cls.name == Algorithm.name:
        cls.name = name  # a user's unregistered class: messages and results name it by its spec
    return cls


def constructor_args(cls: type[Algorithm]) -> set[str]:
    """The keyword-only arguments of the class's constructor (what it trains toward: reward, potential…)."""
    params = inspect.signature(cls.__init__).parameters
    return {n for n, p in params.items() if p.kind == p.KEYWORD_ONLY}


def split_settings(cls: type[Algorithm], settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config fields, constructor arguments) of ``settings``; an unknown name is a TypeError naming the known.
    A name both places take (``reward``): a plain value (a registered name) configures, an object is constructed
    with."""
    names, ctor = config_fields(cls), constructor_args(cls)
    config = {k: v for k, v in settings.items() if k in names and (k not in ctor or isinstance(v, _PLAIN))}
    rest = {k: v for k, v in settings.items() if k not in config}
    unknown = sorted(k for k in rest if k not in ctor)
    if unknown:
        raise TypeError(f"{cls.name}: unknown config fields {unknown}; known: {sorted(names)}"
                        + (f" (constructor: {sorted(ctor)})" if ctor else ""))
    return config, rest


def _is_policy(policy: Any) -> bool:
    return isinstance(policy, torch.nn.Module) and callable(getattr(policy, "sequence_log_prob", None))


def make_algorithm(name: str | type[Algorithm], policy: Any, offer: Offer | None = None, **settings: Any
                   ) -> Algorithm:
    """Build an algorithm for ``policy`` from its name, what the run ``offer`` s and explicit ``settings`` (config
    fields, or constructor arguments such as ``reward=``, ``potential=``, ``critic=``)."""
    cls = resolve_algorithm(name)
    if not _is_policy(policy):
        raise TypeError(f"{cls.name}: policy must be a seqrl policy (an AutoregressivePolicy: "
                        f"seqrl.make_policy(...)), got {type(policy).__name__}")
    offer = offer or Offer()
    config, ctor = split_settings(cls, settings)
    derived_config, derived_ctor = split_settings(cls, cls.defaults_for(policy, offer, config))
    args = constructor_args(cls)
    for arg in _OFFERED:
        value = getattr(offer, arg)
        if value is None or arg not in args or arg in ctor:
            continue
        if arg == "reward" and isinstance(value, str) and "reward" in config_fields(cls):
            derived_config.setdefault("reward", value)
        else:
            ctor[arg] = value
    return cls(policy, cls.Config(**{**derived_config, **config}), **{**derived_ctor, **ctor})


__all__ = ["constructor_args", "make_algorithm", "resolve_algorithm", "split_settings"]
