"""Does ERAC's critic learn the values of a fixed actor within a CPU-sized critic phase? (issue #24)

    python benchmarks/critic_target_probe.py BETA [EPOCHS]

On ``variant_translation`` (the suite's defaults, data seed 0): the actor is the suite's policy trained by MLE for
10 epochs (seed 0); then only ERAC's critic trains (``critic_only``, the critics preset's pay-off BLEU × |y*| and
Table 6's τ, λ_var, rates) with target-network rate BETA, for EPOCHS epochs (default 8). After each epoch it prints
the mean training critic loss, the validation TD error (:meth:`seqrl.algorithms.erac.ERAC.critic_valid_loss`) and
the critic's squared error against the sampled returns-to-go G_t = Σ_{k≥t} r_k on one fixed draw of the actor per
validation source ("MC-MSE"): the variance of those returns (printed first) is what a critic that knows only their
mean would score, so MC-MSE below it means the critic has learned values. Also printed first: mean |r_t| per token
(the TD error of a critic that predicts 0 everywhere).
"""

from __future__ import annotations

import sys
import time

import torch

from seqrl.algorithms import make_algorithm
from seqrl.bench.seq2seq import Seq2SeqSettings, Seq2SeqSuite
from seqrl.critics import gather_q
from seqrl.policies import make_policy
from seqrl.training import FitConfig, fit
from seqrl.utils import seed_everything


def returns_to_go(rollout) -> torch.Tensor:
    r = torch.where(rollout.samples.mask_t, rollout.reward_t, torch.zeros_like(rollout.reward_t))
    return torch.flip(torch.cumsum(torch.flip(r, [1]), 1), [1])


def main() -> None:
    beta = float(sys.argv[1])
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    torch.set_num_threads(1)
    task = Seq2SeqSuite.build_task(Seq2SeqSettings(task="variant_translation"))
    train, valid = task.split("train"), task.split("valid")
    seed_everything(0)
    actor = make_policy("seq2seq", task.vocab, task.max_len, source_vocab=task.source_vocab, hidden_size=64,
                        embedding_dim=32, dropout=0.2)
    fit(make_algorithm("mle", actor, lr=3e-3, batch_size=32), train,
        config=FitConfig(max_epochs=10, progress=False, seed=0))
    seed_everything(0)
    alg = make_algorithm("erac", actor, reward="bleu_scaled", valid=valid, batch_size=32, critic_only=True,
                         lr_decay_metric=None, beta=beta)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        held = alg.collect(valid)
    g, mask = returns_to_go(held), held.samples.mask_t
    print("mean |r_t|", float(held.reward_t[mask].abs().mean()), "mean R", float(held.reward_t.sum(1).mean()),
          "len", float(held.samples.lengths.float().mean()))
    print("valid var(G)", float(g[mask].var()), flush=True)
    start = time.time()
    for epoch in range(epochs):
        perm = torch.randperm(train.batch_size)
        losses = [float(alg.update(train.index(perm[i:i + 32]))["critic_loss"]) for i in range(0, train.batch_size, 32)]
        with torch.no_grad():
            q = gather_q(alg.critic(held.samples, held.refs), held.samples.tokens)
            mc = float(((q - g) ** 2)[mask].mean())
        print("beta", beta, epoch, round(sum(losses) / len(losses), 3), round(alg.critic_valid_loss(valid), 4),
              "MC-MSE", round(mc, 3), f"{time.time() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
