"""Evaluation metrics: cross-entropy, motif frequency, corpus BLEU/ROUGE, diversity (Distinct-n, Self-BLEU)."""

from __future__ import annotations

import math

import torch

from .textscore import corpus_bleu, corpus_rouge, distinct_n, self_bleu  # noqa: F401  (seqrl.metrics' API)
from .types import BatchError, SequenceBatch, Vocab
from .utils import eval_mode, motif_presence


@torch.no_grad()
def sequence_log_probs(policy, data: SequenceBatch, batch_size: int = 1000) -> torch.Tensor:
    """[N] log π(y | x) of every row, in eval mode and chunks (CPU float64 result)."""
    if data.batch_size == 0:
        raise BatchError("empty data: cannot evaluate a policy on no sequences")
    with eval_mode(policy):
        out = []
        for start in range(0, data.batch_size, batch_size):
            idx = torch.arange(start, min(start + batch_size, data.batch_size))
            chunk = data.index(idx).to(policy.device)
            out.append(policy.sequence_log_prob(chunk).double().cpu())
        return torch.cat(out)


def cross_entropy(policy, data: SequenceBatch, batch_size: int = 1000) -> float:
    """CE(T, π) = −(1/|T|) Σ_{y∈T} log π(y | x), nats per sequence (EOS included)."""
    return float(-sequence_log_probs(policy, data, batch_size).mean())


@torch.no_grad()
def exposure_bias(policy, data: SequenceBatch, *, generator: torch.Generator | None = None,
                  batch_size: int = 1000) -> dict[str, float]:
    """How much one wrong token in the prefix derails next-token prediction.

    Per row, the token at a position s drawn uniformly from the non-EOS positions is replaced by
    another generatable symbol, drawn uniformly; every later reference token y_t (t > s, EOS
    included) is then predicted under teacher forcing, once after the reference prefix and once
    after the corrupted one. MLE only ever conditions on reference prefixes, so at test time its
    own mistakes put it off its training distribution: exposure bias ([ERPO] Sec. 1; Ranzato et
    al. 2016). Returns the accuracy and the mean −log π(y_t | ·) of the tokens after s under
    both prefixes, and ``accuracy_drop`` = clean − corrupted accuracy. Rows of one token (only
    EOS) have no position to corrupt and are skipped.
    """
    if data.batch_size == 0:
        raise BatchError("empty data: cannot evaluate a policy on no sequences")
    rows = torch.nonzero(data.lengths >= 2).flatten()
    if rows.numel() == 0:
        raise BatchError("every sequence has a single token: no prefix to corrupt")
    data = data.index(rows)
    vocab_ids = torch.tensor(policy.vocab.symbol_ids)  # sorted, EOS excluded
    if vocab_ids.numel() < 2:
        raise ValueError("exposure_bias needs at least two non-EOS symbols to substitute")
    B, T = data.tokens.shape
    position = (torch.rand(B, generator=generator) * (data.lengths - 1).float()).long()  # s ∈ [0, len − 2]
    offset = torch.randint(1, vocab_ids.numel(), (B,), generator=generator)
    rank = torch.searchsorted(vocab_ids, data.tokens[torch.arange(B), position].cpu())
    corrupted_tokens = data.tokens.clone()
    corrupted_tokens[torch.arange(B), position] = vocab_ids[(rank + offset) % vocab_ids.numel()].to(data.device)
    t = torch.arange(T)[None]
    after = (t > position[:, None]) & (t < data.lengths[:, None])
    was_training = policy.training
    policy.eval()
    totals = {"clean": [0.0, 0.0], "corrupted": [0.0, 0.0]}
    try:
        for start in range(0, B, batch_size):
            idx = torch.arange(start, min(start + batch_size, B))
            clean = data.index(idx).to(policy.device)
            inputs = {"clean": clean, "corrupted": SequenceBatch(corrupted_tokens[idx].to(policy.device),
                                                                 clean.lengths, clean.context)}
            mask = after[idx].to(policy.device)
            for name, batch in inputs.items():
                log_dists = policy.log_dists(batch)
                logp = log_dists.gather(2, clean.tokens.unsqueeze(2)).squeeze(2)
                correct = log_dists.argmax(-1) == clean.tokens
                totals[name][0] += float(correct[mask].sum())
                totals[name][1] += float(-logp[mask].sum())
    finally:
        policy.train(was_training)
    count = float(after.sum())
    out = {f"{name}_accuracy": v[0] / count for name, v in totals.items()}
    out.update({f"{name}_nll": v[1] / count for name, v in totals.items()})
    out["accuracy_drop"] = out["clean_accuracy"] - out["corrupted_accuracy"]
    return out


@torch.no_grad()
def motif_frequency(samples: SequenceBatch, vocab: Vocab, motif: str) -> float:
    """Fraction of sequences that contain the motif."""
    ids = torch.tensor(vocab.encode(list(motif), add_eos=False), device=samples.device)
    return float(motif_presence(samples, ids).float().mean())


@torch.no_grad()
def sample_in_chunks(policy, num: int, chunk: int = 10_000, generator: torch.Generator | None = None) -> SequenceBatch:
    """``num`` unconditional samples, drawn ``chunk`` at a time, concatenated on the CPU."""
    from .types import concat_batches

    was_training = policy.training
    policy.eval()
    try:
        parts = []
        left = num
        while left > 0:
            n = min(chunk, left)
            parts.append(policy.sample(n, generator=generator).batch.to("cpu"))
            left -= n
        return concat_batches(parts, pad=policy.vocab.pad)
    finally:
        policy.train(was_training)


@torch.no_grad()
def reward_score(reward, policy, data: SequenceBatch) -> float:
    """The reward of ``policy``'s greedy decodes against ``data``'s references (one decode per
    source; an unconditional policy's mode against every reference)."""
    from .rewards.base import compute_reward

    data = data.to(policy.device)
    count = 1 if data.context is not None else data.batch_size
    with eval_mode(policy):
        hyps = policy.greedy(count, data.context).batch.with_context(None)
    refs = data.with_context(None)
    corpus = getattr(reward, "corpus_score", None)
    if corpus is not None:
        return float(corpus(hyps, refs))
    return float(compute_reward(reward, hyps, refs).mean())


@torch.no_grad()
def prompt_scores(policy, prompts: SequenceBatch, *, reward=None, potential=None, per_prompt: int = 16,
                  seed: int = 0) -> dict[str, float]:
    """Scores of ``per_prompt`` completions π(·|x) of every prompt x (eval mode, drawn from a generator seeded by
    ``seed``, so that successive evaluations compare on common random numbers): ``valid_reward``, the mean reward
    r(x, y), with a reward; ``valid_kl_p_pi``, the self-normalized importance estimate of the mean over prompts of
    KL(p_x‖π(·|x)) = E_π[(w/Z_x) log(w/Z_x)], w = P(x, y)/π(y|x), Ẑ_x = mean w, with a potential (consistent as
    ``per_prompt`` grows; it cannot see mass p_x puts where π draws nothing)."""
    from .ebm.base import checked_log_potential
    from .rewards.base import compute_reward

    prompts = prompts.to(policy.device)
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    with eval_mode(policy):
        samples = policy.sample(per_prompt, prompts, generator=generator)
    scores: dict[str, float] = {}
    if reward is not None:
        scores["valid_reward"] = float(compute_reward(reward, samples.batch, None).mean())
    if potential is not None:
        log_w = (checked_log_potential(potential, samples.batch, require_support=False).to(samples.logp)
                 - samples.logp).double().view(-1, per_prompt)
        log_z = torch.logsumexp(log_w, 1, keepdim=True) - math.log(per_prompt)
        p_hat = (log_w - log_z).exp() / per_prompt  # self-normalized weights, summing to 1 per prompt
        kl = torch.where(p_hat > 0, p_hat * (log_w - log_z), torch.zeros_like(p_hat)).sum(1)
        scores["valid_kl_p_pi"] = float(kl[torch.isfinite(log_z.squeeze(1))].mean())
    return scores
