"""Potentials (energy-based models): unnormalized log P(x) for any batch of sequences.

An EBM is identified with its potential P(x) = exp(-U(x)) ([DPG] Sec. 2.1); p = P / Z.
DPG, KL-control, GAMs and the ``potential`` reward all read the same objects.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, Protocol, cast, runtime_checkable

import torch
from torch import Tensor

from ..registry import (
    Registry,
    build_plugin,
    first_line,
    name_plugin,
    object_source,
    plugin_exit,
    plugin_source,
    record_range,
)
from ..rewards.base import call_text_function, text_signature
from ..types import SequenceBatch, Vocab
from ..utils import eval_mode, motif_presence


class PotentialError(ValueError):
    """A potential that produced NaN/+inf, or that is -inf on a whole batch."""


@runtime_checkable
class Potential(Protocol):
    """log P(x) → [B]; -inf marks sequences outside the support."""

    def log_potential(self, batch: SequenceBatch) -> Tensor: ...


class FunctionPotential:
    """A plain function ``fn(batch) → [B]`` log P(x) as a :class:`Potential`.

    A function with a parameter named ``completions`` is text-level: ``fn(completions=[str], prompts=[str], …)``
    returns log P of each decoded completion (a list of floats or a [B] tensor), called as text-level rewards are
    (:func:`seqrl.rewards.base.call_text_function`; it needs ``vocab``)."""

    def __init__(self, fn: Callable[..., Any], name: str, vocab: Vocab | None = None) -> None:
        self.fn, self.name, self.vocab = fn, name, vocab
        self.text = text_signature(fn)
        self.plugin_source = object_source(fn)

    def log_potential(self, batch: SequenceBatch) -> Tensor:
        if self.text is None:
            return self.fn(batch)
        values = call_text_function(self.fn, self.text, batch, None, self.vocab, f"potential {self.name!r}",
                                    PotentialError)
        return values if isinstance(values, Tensor) else torch.as_tensor(values, dtype=torch.float32,
                                                                         device=batch.device)

    def __repr__(self) -> str:
        return f"FunctionPotential({self.name!r}, {self.plugin_source})"


def potential_factory(name: str, obj: Any) -> Callable[..., Potential]:
    """What the registry holds for ``obj``: a class, or a function with a ``vocab`` parameter, is a
    factory ``(vocab=…, **kwargs) → Potential``; a built potential (with ``log_potential``) is returned
    as it is; any other callable is log P(x) itself, ``fn(batch) → [B]``."""
    if inspect.isclass(obj):
        return cast(Callable[..., Potential], obj)  # a class builds its instances
    if hasattr(obj, "log_potential"):
        return lambda vocab=None, **kwargs: obj
    if not callable(obj):
        raise PotentialError(f"potential plug-in {name!r} is {type(obj).__name__}: expected a Potential class, "
                             "a factory taking vocab=, or a function log P(batch) → [B]")
    try:
        takes_vocab = "vocab" in inspect.signature(obj).parameters
    except (TypeError, ValueError):
        takes_vocab = False
    if takes_vocab:
        return obj

    def build(vocab: Vocab | None = None, **kwargs: Any) -> Potential:
        if kwargs:
            raise PotentialError(f"potential {name!r} ({object_source(obj)}) is a plain function: it takes no "
                                 f"settings, got {sorted(kwargs)}")
        return FunctionPotential(obj, name, vocab)

    return build


POTENTIALS: Registry[Callable[..., Potential]] = Registry("potential", group="seqrl.potentials",
                                                         adapt=potential_factory)


def register_potential(name: str) -> Callable[[Any], Any]:
    """Decorator registering a potential under ``name``: a class built with ``vocab=`` (and settings),
    or a plain function ``log_P(batch) → [B]`` (-inf outside the support)."""
    return POTENTIALS.register(name)


def make_potential(name: str, vocab: Vocab, **kwargs: Any) -> Potential:
    """Build a registered potential (or one named ``module:function``) for ``vocab``."""
    potential = build_plugin(POTENTIALS, name, PotentialError, vocab=vocab, **kwargs)
    if not hasattr(potential, "log_potential"):
        raise PotentialError(f"potential factory {name!r} returned {type(potential).__name__}, which has no "
                             "log_potential(batch)")
    name_plugin(potential, name)
    return potential


def _label(potential: Any) -> str:
    """``potential 'name' (plug-in module:function)``, as messages name a potential."""
    name = getattr(potential, "name", None)
    source = plugin_source(potential)
    label = f"potential {name!r}" if name is not None else f"potential {type(potential).__name__}"
    return label if source is None or source == name else f"{label} (plug-in {source})"


@torch.no_grad()
def base_log_prob(base: Any, batch: SequenceBatch) -> Tensor:
    """[B] log a(x) of the base model of an EBM P(x) = a(x)·e^{…}, scored as a distribution (eval mode:
    dropout off; its train/eval mode restored), on the batch's device."""
    with eval_mode(base):
        return base.sequence_log_prob(batch.to(base.device)).to(batch.device)


def _call_potential(potential: Potential, batch: SequenceBatch, plugin: bool) -> Any:
    """``potential.log_potential(batch)``; a plug-in gets a copy (writing into it changes nothing seqrl keeps), and
    its failures, ``sys.exit`` included, are one :class:`PotentialError` naming it."""
    try:
        return potential.log_potential(batch.clone() if plugin else batch)
    except PotentialError:
        raise
    except SystemExit as err:
        raise PotentialError(plugin_exit(err, _label(potential))) from None
    except Exception as err:
        if not plugin:  # seqrl's own potentials raise seqrl's own errors
            raise
        raise PotentialError(f"{_label(potential)}: log_potential raised {type(err).__name__}: "
                             f"{first_line(err)}") from err


def _check_tensor(potential: Potential, values: Any, batch: SequenceBatch) -> Tensor:
    """The returned values as a real float [B] tensor on the batch's device, or the error that says what is wrong."""
    label = _label(potential)
    if not isinstance(values, Tensor):
        text = repr(values)
        text = text if len(text) <= 40 else text[:39] + "…"
        raise PotentialError(f"{label}: log_potential returned {type(values).__name__} {text}; "
                             f"expected a ({batch.batch_size},) float tensor")
    if values.is_meta or values.device != batch.device:
        where = "the meta device (no values)" if values.is_meta else f"device {values.device}"
        raise PotentialError(f"{label}: log_potential returned values on {where}, the batch is on "
                             f"{batch.device}; return them on the batch's device")
    if values.shape != (batch.batch_size,):
        raise PotentialError(f"{label}: log_potential returned shape {tuple(values.shape)}, "
                             f"expected ({batch.batch_size},)")
    if values.is_complex():
        raise PotentialError(f"{label}: log_potential returned a complex tensor; expected real values")
    return values if values.is_floating_point() else values.float()  # integer log-potentials are fine


def checked_log_potential(potential: Potential, batch: SequenceBatch, *, require_support: bool = True) -> Tensor:
    """log P(x) → [B], raising :class:`PotentialError` on NaN, +inf, a wrong shape, device or type, or
    (when ``require_support``) a batch where every value is -inf (P = 0 on all of it: no importance
    weight can be formed and Z would be estimated as 0). The one place where potentials' outputs are
    checked; a plug-in that raises gets an error naming it."""
    plugin = plugin_source(potential) is not None
    values = _check_tensor(potential, _call_potential(potential, batch, plugin), batch)
    bad = torch.isnan(values) | (values == math.inf)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise PotentialError(f"{_label(potential)}: log_potential returned NaN or +inf at {int(bad.sum())} of "
                             f"{values.numel()} sequences (first at index {first}: {values[first].item()}); "
                             "expected finite values or -inf")
    if plugin:
        record_range(potential, values)
    if require_support and bool((values == -math.inf).all()):
        raise PotentialError(
            f"the potential is -inf (P = 0) on all {batch.batch_size} sequences of the batch: "
            "it has no support where the proposal puts mass; check the potential, or sample more"
        )
    return values


class ScoredBase:
    """log P(x, y) = log a(y|x) + log b(x, y): a base model a times a scorer b ≥ 0, disco's ``base * scorer``.
    With b ∈ {0, 1} it is GDC's pointwise constraint a·1[φ = 1] ([GDC++] Eq. 16); with prompts, CDPG's
    P(x, y) = a(y|x)·b(x, y) (Korbak et al., 2022), one Z_x per prompt. The scorer is any reward
    (:func:`~seqrl.rewards.make_reward`: a registered name, ``module:function``, a text-level function of
    ``completions``); a score below 0 is refused, 0 excludes the sequence."""

    def __init__(self, base: Any, scorer: Any, name: str = "scored_base") -> None:
        self.base, self.scorer, self.name = base, scorer, name
        for p in base.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def log_ratio_to_base(self, batch: SequenceBatch) -> Tensor:
        """[B] log b(x, y) (−inf where b = 0)."""
        from ..rewards.base import compute_reward

        scores = compute_reward(self.scorer, batch, None).double()
        if bool((scores < 0).any()):
            raise PotentialError(f"scorer {getattr(self.scorer, 'name', self.scorer)!r} returned {float(scores.min())}"
                                 ": a scorer's b(x, y) must be ≥ 0 (0 excludes a sequence)")
        return scores.log()

    @torch.no_grad()
    def log_potential(self, batch: SequenceBatch) -> Tensor:
        """[B] log a(y|x) + log b(x, y)."""
        log_a = base_log_prob(self.base, batch)
        return log_a + self.log_ratio_to_base(batch).to(log_a)


class MotifProcessPotential:
    """Unnormalized p_true of the GAM motif task ([DPG] Sec. 4, A.3): white noise filtered by
    the motif. P(x) = 2^-n if |x| = n and m occurs in x, else 0."""

    def __init__(self, vocab: Vocab, motif: str, length: int) -> None:
        self.motif, self.length = motif, length
        self._motif_ids = torch.tensor(vocab.encode(list(motif), add_eos=False))
        self._presence = motif_presence

    def log_potential(self, batch: SequenceBatch) -> Tensor:
        present = self._presence(batch, self._motif_ids.to(batch.device))
        right_length = batch.lengths == self.length + 1
        value = torch.full((batch.batch_size,), -self.length * math.log(2.0), device=batch.device)
        return torch.where(present & right_length, value, torch.full_like(value, -math.inf))
