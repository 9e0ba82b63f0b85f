"""The reward protocol, its registry, and the one token-level decomposition every reward shares.

A reward is a pure batched function R(y; y*) → [B]. Its token-level form is the
incremental pay-off ΔR(y_t | y_<t, y*) = R(y_≤t; y*) − R(y_<t; y*) ([ERPO] Eq. 3,
[VAML/ERAC] Eq. 13) with the partial-sequence convention R(ŷ) = R(ŷ + eos)
([VAML/ERAC] Eq. 4) and R(∅) := 0, so that Σ_t ΔR_t = R(y). (Taking R(∅) = R(eos)
instead would shift only the first step's reward, equally for every action.)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
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
from ..types import BatchError, SequenceBatch, Vocab
from ..utils import check_finite


class RewardError(ValueError):
    """A reward that returned the wrong shape or non-finite values, or was misused."""


@runtime_checkable
class Reward(Protocol):
    """R(y; y*) for a batch of hypotheses and (optionally) references.

    Required attributes:
        name: registry name, used in messages.
        needs_reference: whether ``refs`` must be given.
        terminal_only: the reward is defined for whole sequences only; its token-level form
            puts all of R on the final token instead of decomposing it.

    Optional attributes, read with a default where absent (:class:`BaseReward` sets the first three):
        vocab (None): the :class:`~seqrl.types.Vocab` the reward decodes ids with; the token-level
            form needs it (or a ``vocab=`` argument) to know the EOS id.
        reference_symmetric (False): R is unchanged by swapping two symbols absent from y* (BLEU,
            ROUGE, hamming, edit, delta); :func:`candidate_rewards` then scores one absent symbol for all.
        allows_neg_inf (False): R may be −inf (R_δ of [ERPO] Eq. 6); other non-finite values are errors.
        corpus_score (absent): ``corpus_score(hyps, refs) → float``, the reward's corpus-level form
            (corpus BLEU), used for ``valid_reward`` in place of the mean sentence score.
    """

    name: str
    needs_reference: bool
    terminal_only: bool

    def __call__(self, hyps: SequenceBatch, refs: SequenceBatch | None = None) -> Tensor:
        """[B] sequence-level rewards."""


class BaseReward:
    """Convenience base with the protocol's attributes; subclasses implement ``score``."""

    name = "reward"
    needs_reference = True
    terminal_only = False
    reference_symmetric = False
    allows_neg_inf = False

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab

    def score(self, hyps: SequenceBatch, refs: SequenceBatch | None) -> Tensor:
        raise NotImplementedError

    def __call__(self, hyps: SequenceBatch, refs: SequenceBatch | None = None) -> Tensor:
        if self.needs_reference and refs is None:
            raise RewardError(f"reward {self.name!r} compares with a reference: pass refs")
        return self.score(hyps, refs)

    def _reference(self, refs: SequenceBatch | None) -> SequenceBatch:
        """``refs``, which a reference-based ``score`` requires (narrows the optional type)."""
        if refs is None:
            raise RewardError(f"reward {self.name!r} compares with a reference: pass refs")
        return refs

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# --- text-level functions: TRL's convention ----------------------------------------------------------------
@dataclass(frozen=True)
class TextSignature:
    """How a text-level function (one with a parameter named ``completions``) is called: whether it receives
    ``prompts=`` and ``references=`` (by name, or through ``**kwargs``), whether it takes ``**kwargs`` (then it
    also receives ``completion_ids=``), and whether it needs references (a ``references`` parameter without a
    default)."""

    prompts: bool
    references: bool
    var_keyword: bool
    needs_reference: bool


def text_signature(fn: Callable[..., Any]) -> TextSignature | None:
    """The :class:`TextSignature` of ``fn``, None unless it has a parameter named ``completions``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    if "completions" not in params:
        return None
    var_keyword = any(p.kind == p.VAR_KEYWORD for p in params.values())
    refs = params.get("references")
    return TextSignature(prompts="prompts" in params or var_keyword,
                         references="references" in params or var_keyword, var_keyword=var_keyword,
                         needs_reference=refs is not None and refs.default is inspect.Parameter.empty)


def _completion_ids(batch: SequenceBatch, vocab: Vocab) -> list[list[int]]:
    """Each row's ids up to its EOS (excluded): the tokenizer's ids for a tokenizer's vocabulary."""
    rows = [row[:-1] if row and row[-1] == vocab.eos else row for row in batch.to_lists()]
    model_rows = getattr(vocab, "model_rows", None)
    return model_rows(rows) if callable(model_rows) else rows


def call_text_function(fn: Callable[..., Any], signature: TextSignature, hyps: SequenceBatch,
                       refs: SequenceBatch | None, vocab: Vocab | None, label: str,
                       error: type[Exception] = ValueError) -> Any:
    """Call a text-level function TRL's way and return what it returned (checked for its length).

    ``fn(completions=[str], prompts=[str], references=[str], completion_ids=[[int]])``: ``completions`` are the
    decoded completions without the prompt (``vocab.decode``: a tokenizer's text, or a plain vocabulary's
    space-joined symbols; EOS and padding dropped); ``prompts`` the prompt texts (``hyps.context``, decoded with the
    same vocabulary; "" for a row without one) when ``fn`` has that parameter or ``**kwargs``; ``references`` the
    reference texts, when given, likewise; ``completion_ids`` only through ``**kwargs``. It returns a list of
    floats or a [B] tensor."""
    if vocab is None:
        raise error(f"{label} takes completions= (texts): it needs the vocabulary to decode them (vocab=)")
    B = hyps.batch_size
    kwargs: dict[str, Any] = {"completions": vocab.decode(hyps)}
    if signature.prompts:
        kwargs["prompts"] = vocab.decode(hyps.context, strip=False) if hyps.context is not None else [""] * B
    if signature.references and refs is not None:
        kwargs["references"] = vocab.decode(refs)
    if signature.var_keyword:
        kwargs["completion_ids"] = _completion_ids(hyps, vocab)
    values = fn(**kwargs)
    count = len(values) if isinstance(values, list | tuple) else (
        values.shape[0] if isinstance(values, Tensor) and values.dim() == 1 else None)
    if count is not None and count != B:
        raise error(f"{label} returned {count} values for {B} completions; expected one per completion")
    return values


class FunctionReward:
    """A plain scoring function ``fn(hyps, refs) → [B]`` (or ``fn(hyps)``) as a :class:`Reward`.

    ``needs_reference``: whether ``fn``'s second parameter has no default. ``fn`` may carry the
    attributes ``needs_reference``, ``terminal_only`` and ``allows_neg_inf`` to say otherwise.

    A function with a parameter named ``completions`` is text-level, called TRL's way (so a TRL reward function
    works as it is): ``fn(completions=[str], prompts=[str], …) → list of floats or [B]`` (see
    :func:`call_text_function`); it needs ``vocab`` to decode with, scores whole completions
    (``terminal_only`` unless it says otherwise) and needs references only through a ``references`` parameter
    without a default."""

    reference_symmetric = False

    def __init__(self, fn: Callable[..., Any], name: str, vocab: Vocab | None = None) -> None:
        self.text = text_signature(fn)
        try:
            params = [p for p in inspect.signature(fn).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
        except (TypeError, ValueError):
            params = []
        self.fn, self.name, self.vocab = fn, name, vocab
        self.takes_refs = not params or len(params) >= 2 or params[0].kind == params[0].VAR_POSITIONAL
        required = len(params) >= 2 and params[1].kind != params[1].VAR_POSITIONAL \
            and params[1].default is inspect.Parameter.empty
        if self.text is not None:
            required = self.text.needs_reference
        self.needs_reference = bool(getattr(fn, "needs_reference", required))
        self.terminal_only = bool(getattr(fn, "terminal_only", self.text is not None))
        self.allows_neg_inf = bool(getattr(fn, "allows_neg_inf", False))
        self.plugin_source = object_source(fn)

    def __call__(self, hyps: SequenceBatch, refs: SequenceBatch | None = None) -> Any:
        if self.needs_reference and refs is None:
            raise RewardError(f"reward {self.name!r} compares with a reference: pass refs")
        if self.text is not None:
            return call_text_function(self.fn, self.text, hyps, refs, self.vocab, f"reward {self.name!r}",
                                      RewardError)
        return self.fn(hyps, refs) if self.takes_refs else self.fn(hyps)

    def __repr__(self) -> str:
        return f"FunctionReward({self.name!r}, {self.plugin_source})"


def reward_factory(name: str, obj: Any) -> Callable[..., Reward]:
    """What the registry holds for ``obj``: a class, or a function with a ``vocab`` parameter, is a
    factory ``(vocab=…, **kwargs) → Reward``; a built reward object (not a function, with
    ``needs_reference``) is returned as it is; any other callable is a scoring function R(hyps[, refs])."""
    if inspect.isclass(obj):
        return cast(Callable[..., Reward], obj)  # a class builds its instances
    if not callable(obj):
        raise RewardError(f"reward plug-in {name!r} is {type(obj).__name__} {_short(obj)}: expected a Reward "
                          "class, a factory taking vocab=, or a function R(hyps, refs) → [B]")
    if not inspect.isfunction(obj) and hasattr(obj, "needs_reference"):
        return lambda vocab=None, **kwargs: obj
    try:
        takes_vocab = "vocab" in inspect.signature(obj).parameters
    except (TypeError, ValueError):  # a builtin without a signature: score with it as it is
        takes_vocab = False
    if takes_vocab:
        return obj

    def build(vocab: Vocab | None = None, **kwargs: Any) -> Reward:
        if kwargs:
            raise RewardError(f"reward {name!r} ({object_source(obj)}) is a plain function: it takes no "
                              f"settings, got {sorted(kwargs)}")
        return FunctionReward(obj, name, vocab)

    return build


REWARDS: Registry[Callable[..., Reward]] = Registry("reward", group="seqrl.rewards", adapt=reward_factory)


def register_reward(name: str) -> Callable[[Any], Any]:
    """Decorator registering a reward under ``name``: a class (``@register_reward("mine") class
    Mine(BaseReward)``, built with ``vocab=``) or a plain function ``R(hyps, refs=None) → [B]``."""
    return REWARDS.register(name)


def make_reward(name: str, vocab: Vocab, **kwargs: Any) -> Reward:
    """Instantiate a registered reward (or one named ``module:function``): ``make_reward("bleu", vocab)``."""
    reward = build_plugin(REWARDS, name, RewardError, vocab=vocab, **kwargs)
    if not callable(reward):
        raise RewardError(f"reward factory {name!r} returned a non-callable {_short(reward)}")
    name_plugin(reward, name, generic="reward")  # a plug-in class that kept BaseReward's generic name
    return reward


def _named(reward: Any) -> str:
    """``'name'`` as messages name a reward."""
    return repr(getattr(reward, "name", reward))


def _origin(reward: Any) -> str:
    """`` (plug-in module:function)`` for a reward defined outside seqrl (unless its name says it)."""
    source = plugin_source(reward)
    return "" if source is None or source == getattr(reward, "name", None) else f" (plug-in {source})"


def _as_scores(values: Any, reward: Reward, hyps: SequenceBatch) -> Tensor:
    """A reward's return value as a float tensor, or a one-line :class:`RewardError` naming the reward and
    the type it returned (strings, objects, None, non-numeric arrays)."""
    expected = f"expected a [B]=({hyps.batch_size},) float tensor (or a list of numbers)"

    def fail(what: str) -> RewardError:
        return RewardError(f"reward {_named(reward)} returned {what}; {expected}{_origin(reward)}")

    if isinstance(values, Tensor):
        if values.is_complex():
            raise fail(f"a complex tensor ({values.dtype})")
    elif isinstance(values, np.ndarray):
        if values.dtype.kind not in "biuf":
            raise fail(f"a numpy array of dtype {values.dtype}")
    elif isinstance(values, list | tuple):
        for i, v in enumerate(values):
            if isinstance(v, Tensor) and v.numel() == 1 and not v.is_complex():
                continue
            if not isinstance(v, int | float | np.integer | np.floating):
                raise fail(f"a {type(values).__name__} holding {type(v).__name__} {_short(v)} at index {i}")
    elif not isinstance(values, int | float | np.integer | np.floating):
        raise fail(f"{type(values).__name__} {_short(values)}")
    try:
        return torch.as_tensor(values, dtype=torch.float32, device=hyps.device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise fail(f"{type(values).__name__} that is not a tensor of numbers ({str(err).splitlines()[0]})") from None


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compute_reward(reward: Reward, hyps: SequenceBatch, refs: SequenceBatch | None = None) -> Tensor:
    """R(y; y*) → [B] float tensor on ``hyps``' device, checked for shape and finiteness: the one
    place where every reward's output is checked. A plug-in (defined outside seqrl) that raises gets
    a :class:`RewardError` naming it and what it raised."""
    if refs is not None and refs.batch_size != hyps.batch_size:
        raise BatchError(f"{hyps.batch_size} hypotheses but {refs.batch_size} references")
    plugin = plugin_source(reward) is not None
    try:
        if plugin:  # copies: a plug-in that writes into its inputs changes nothing seqrl keeps
            raw = reward(hyps.clone(), refs.clone() if refs is not None else None)
        else:
            raw = reward(hyps, refs)
    except RewardError:
        raise
    except SystemExit as err:
        raise RewardError(plugin_exit(err, f"reward {_named(reward)}{_origin(reward)}")) from None
    except Exception as err:
        if not plugin:  # seqrl's own rewards raise seqrl's own errors, unchanged
            raise
        raise RewardError(f"reward {_named(reward)} raised {type(err).__name__}: {first_line(err)}"
                          f"{_origin(reward)}") from err
    if isinstance(raw, Tensor) and raw.is_meta:
        raise RewardError(f"reward {_named(reward)} returned a tensor on the meta device (no values){_origin(reward)}")
    values = _as_scores(raw, reward, hyps)
    if values.shape != (hyps.batch_size,):
        raise RewardError(
            f"reward {_named(reward)} returned shape {tuple(values.shape)}, "
            f"expected [B]=({hyps.batch_size},){_origin(reward)}"
        )
    try:
        check_finite(values, f"reward {_named(reward)}", allow_neg_inf=getattr(reward, "allows_neg_inf", False))
    except ValueError as err:
        raise RewardError(f"{err}{_origin(reward)}") from None
    if plugin:
        record_range(reward, values)
    return values


def prefixes_with_eos(hyps: SequenceBatch, eos: int, pad: int = 0) -> SequenceBatch:
    """All prefixes y_≤k (k = 1…T) of every row, each closed by EOS: [B·T, T+1].

    Row ``b·T + k-1`` holds y_1…y_k + eos (no second EOS when y_k already is EOS);
    prefixes longer than a row's length repeat the whole row.
    """
    B, T = hyps.tokens.shape
    dev = hyps.device
    k = torch.arange(1, T + 1, device=dev)[None, :].expand(B, T)  # (B, T)
    k = torch.minimum(k, hyps.lengths[:, None])
    last = hyps.tokens.gather(1, (k - 1))  # (B, T): y_k
    closed = last == eos
    pos = torch.arange(T + 1, device=dev)[None, None, :]  # (1, 1, T+1)
    src = torch.nn.functional.pad(hyps.tokens, (0, 1), value=pad)[:, None, :].expand(B, T, T + 1)
    tokens = torch.where(pos < k[..., None], src, torch.full_like(src, pad))
    tokens = torch.where((pos == k[..., None]) & ~closed[..., None], torch.full_like(src, eos), tokens)
    lengths = k + (~closed).long()
    return SequenceBatch(tokens.reshape(B * T, T + 1), lengths.reshape(B * T))


def _repeat_rows(batch: SequenceBatch | None, times: int) -> SequenceBatch | None:
    return batch.repeat_interleave(times) if batch is not None else None


def token_rewards(reward: Reward, hyps: SequenceBatch, refs: SequenceBatch | None = None) -> Tensor:
    """[B, T] ΔR_t = R(y_≤t + eos) − R(y_<t + eos), R(∅) := 0; zeros on padding; Σ_t = R(y).

    A ``terminal_only`` reward puts R(y) on the last token. One batched reward call covers
    all B·T prefixes.
    """
    B, T = hyps.tokens.shape
    mask_t = hyps.mask_t
    if getattr(reward, "terminal_only", False):
        total = compute_reward(reward, hyps, refs)
        last = torch.nn.functional.one_hot(hyps.lengths - 1, T).to(total.dtype)
        return last * total[:, None]
    fast = getattr(reward, "prefix_scores", None)
    cum = fast(hyps, refs) if fast is not None and refs is not None else None  # R(y_≤t) in one incremental pass
    if cum is None:
        vocab = getattr(reward, "vocab", None)
        eos = vocab.eos if vocab is not None else 2
        prefixes = prefixes_with_eos(hyps, eos)
        cum = compute_reward(reward, prefixes, _repeat_rows(refs, T)).view(B, T)  # R(y_≤t)
    else:
        cum = cum.to(hyps.device).float()
    prev = torch.nn.functional.pad(cum[:, :-1], (1, 0), value=0.0)
    return torch.where(mask_t, cum - prev, torch.zeros_like(cum))


def candidate_rewards(reward: Reward, prefix: Tensor, refs: SequenceBatch | None, vocab) -> Tensor:
    """[B, V] ΔR(w | prefix, y*) = R(prefix + w + eos) − R(prefix + eos) for every id w that a
    policy may emit (−inf for the others; 0 for EOS by the partial-sequence convention).

    ``prefix`` is [B, t] symbols (no EOS). One batched reward call. A reward marked
    ``reference_symmetric`` (its value is unchanged by swapping two symbols absent from y*:
    BLEU, ROUGE, hamming, edit, delta) is scored only on y*'s symbols, EOS and one absent
    symbol, whose value every other absent symbol shares.
    """
    B, t = prefix.shape
    dev = prefix.device
    V = len(vocab)
    allowed = vocab.generatable_mask().to(dev)
    ids = allowed.nonzero().flatten()  # (C,) candidate ids, EOS included
    if getattr(reward, "reference_symmetric", False) and refs is not None:
        in_ref = torch.zeros(B, V, dtype=torch.bool, device=dev)
        in_ref.scatter_(1, refs.tokens.to(dev).clamp(min=0), True)
        in_ref &= allowed
        in_ref[:, vocab.eos] = True
        absent = allowed & ~in_ref  # (B, V)
        has_absent = absent.any(1)
        outsider = torch.where(has_absent, absent.float().argmax(1), torch.full((B,), vocab.eos, device=dev))
        keep = in_ref.clone()
        keep[torch.arange(B, device=dev), outsider] = True
        C = int(keep.sum(1).max())
        # Per row: its kept ids first (ties broken by id), padded with EOS.
        order = torch.sort((~keep).long() * V + torch.arange(V, device=dev)[None], dim=1).indices[:, :C]
        valid = keep.gather(1, order)
        cand_ids = torch.where(valid, order, torch.full_like(order, vocab.eos))  # (B, C)
    else:
        C = ids.numel()
        cand_ids = ids[None].expand(B, C)
    is_eos = cand_ids == vocab.eos
    fast = getattr(reward, "extension_scores", None)
    after = fast(prefix, refs, cand_ids) if fast is not None and refs is not None else None
    if after is None:
        base = prefix[:, None, :].expand(B, C, t)
        cand = torch.cat([base, cand_ids[..., None], torch.full((B, C, 1), vocab.eos, dtype=torch.long, device=dev)],
                         2)
        lengths = torch.where(is_eos, t + 1, t + 2)  # prefix + eos: no second EOS
        batch = SequenceBatch(cand.reshape(B * C, t + 2), lengths.reshape(B * C))
        after = compute_reward(reward, batch, _repeat_rows(refs, C)).view(B, C)
    else:
        after = after.to(dev).float()
    before = after.gather(1, is_eos.float().argmax(1, keepdim=True)).squeeze(1)  # R(prefix + eos)
    delta = after - before[:, None]
    out = torch.full((B, V), float("-inf"), device=dev)
    if C != ids.numel() or not torch.equal(cand_ids, ids[None].expand(B, C)):
        outsider_value = delta.gather(1, (cand_ids == outsider[:, None]).float().argmax(1, keepdim=True))
        out = torch.where(allowed[None], outsider_value.expand(B, V), out)
    out.scatter_(1, cand_ids, delta)
    return out
