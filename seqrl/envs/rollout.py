"""The batched on-device rollout (the fast path): sample whole batches from a policy and
score them with the same reward code as :class:`~seqrl.envs.SequenceEnv`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..policies.base import OverrideHook, Samples
from ..rewards.base import Reward, compute_reward, token_rewards
from ..types import SequenceBatch


@dataclass(frozen=True)
class Rollout:
    """Samples, their references (repeated to match), R [B], and ΔR [B, T] when dense."""

    samples: Samples
    references: SequenceBatch | None
    reward: Tensor
    reward_t: Tensor | None


def rollout(
    policy,
    reward: Reward,
    *,
    num_samples: int = 1,
    data: SequenceBatch | None = None,
    dense: bool = False,
    temperature: float = 1.0,
    override: OverrideHook | None = None,
    generator: torch.Generator | None = None,
) -> Rollout:
    """Sample ``num_samples`` sequences (per row of ``data`` when given: its context is the
    source and its tokens the reference) and score them: R(y; y*) and, if ``dense``, ΔR."""
    context = data.context if data is not None else None
    # Unconditional with data: ``num_samples`` per data row, so that references line up.
    count = num_samples * data.batch_size if data is not None and context is None else num_samples
    samples = policy.sample(count, context, temperature=temperature, override=override, generator=generator)
    refs = None
    if data is not None and getattr(reward, "needs_reference", True):
        refs = data.with_context(None).repeat_interleave(num_samples).to(samples.batch.device)
    hyps = samples.batch.with_context(None)
    R = compute_reward(reward, hyps, refs)
    R_t = token_rewards(reward, hyps, refs) if dense else None
    return Rollout(samples, refs, R, R_t)
