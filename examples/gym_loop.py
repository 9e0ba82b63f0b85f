"""seqrl's gymnasium environment driven by a plain agent loop, as any gymnasium user would.

``gymnasium.make("seqrl/Copy-v0", ...)`` is a token-level environment: each action is a token id,
the observation holds the prefix written so far and the source ("context"), the reward of a step
is the increment ΔR_t of the task's reward (here −hamming distance to the reference, so the
return of an episode is R(y) = −d_H(y, y*)), ``terminated`` comes with EOS and ``truncated`` when
the prefix is full (the environment then closes the sequence with EOS and pays its reward).

The agent is a table of logits, one row per (position t, source token at t): enough to copy.
It collects episodes with reset/step, then takes a REINFORCE step on them (return minus the batch
mean, times Σ_t ∇ log π(a_t | s_t); [ERPO] App. A), and prints the return statistics as it learns.
This is the interoperable path, one Python step per token; seqrl's own algorithms train on the
batched on-device rollout (``seqrl.rollout``, ``policy.sample``), which computes the same rewards.

Run:  python examples/gym_loop.py          (about 10 s on a 2-core CPU)
      python examples/gym_loop.py --quick  (the reduced form the tests run)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import gymnasium
import numpy as np
import torch

import seqrl  # noqa: F401  (importing seqrl registers the environment ids seqrl/…)
from seqrl.bench.stats import format_table

SEED = 0


@dataclass(frozen=True)
class Stats:
    update: int
    episodes: int
    mean_return: float
    std_return: float
    exact_copies: float
    """Fraction of episodes with return 0 (y = y*)."""


class TablePolicy(torch.nn.Module):
    """π(a | t, x_t) = softmax(logits[t, x_t]) over the legal actions; x_t = PAD past the source's end."""

    def __init__(self, max_len: int, source_size: int, num_actions: int) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(max_len, source_size, num_actions))

    def distribution(self, obs: dict[str, np.ndarray], t: int,
                     action_mask: np.ndarray) -> torch.distributions.Categorical:
        source = obs["context"]
        x_t = int(source[t]) if t < len(source) else 0
        mask = torch.as_tensor(action_mask, dtype=torch.bool)
        return torch.distributions.Categorical(logits=self.logits[t, x_t].masked_fill(~mask, -torch.inf))


def run_episode(env: gymnasium.Env, policy: TablePolicy, generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """One episode: Σ_t log π(a_t | s_t) (differentiable) and the return Σ_t r_t."""
    obs, info = env.reset()
    log_prob, episode_return, t = torch.zeros(()), 0.0, 0
    while True:
        dist = policy.distribution(obs, t, info["action_mask"])
        action = torch.multinomial(dist.probs, 1, generator=generator)[0]
        log_prob = log_prob + dist.log_prob(action)
        obs, reward, terminated, truncated, info = env.step(int(action))
        episode_return += float(reward)
        t += 1
        if terminated or truncated:
            return log_prob, episode_return


def main(argv: list[str] | None = None) -> list[Stats]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer updates (the tests' reduced form)")
    args = parser.parse_args(argv)
    updates, per_update = (25, 16) if args.quick else (150, 32)

    env = gymnasium.make("seqrl/Copy-v0", num_symbols=3, min_length=1, max_length=3, reward="hamming",
                         train_size=200)
    env.reset(seed=SEED)  # seeds the environment's stream of references; later resets continue it
    task = env.unwrapped.task  # type: ignore[attr-defined]
    policy = TablePolicy(task.max_len, len(task.source_vocab), len(task.vocab))
    optimizer = torch.optim.Adam(policy.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(SEED)

    history: list[Stats] = []
    for update in range(updates):
        log_probs, returns = zip(*(run_episode(env, policy, generator) for _ in range(per_update)))
        G = torch.tensor(returns)
        loss = -((G - G.mean()) * torch.stack(log_probs)).mean()  # REINFORCE with the batch-mean baseline
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(Stats(update, (update + 1) * per_update, float(G.mean()), float(G.std()),
                             float((G == 0).double().mean())))
    env.close()
    shown = [s for s in history if s.update % max(1, updates // 8) == 0 or s.update == updates - 1]
    print(format_table(["update", "episodes", "mean return", "std", "exact copies"],
                       [[s.update, s.episodes, s.mean_return, s.std_return, s.exact_copies] for s in shown]))
    return history


if __name__ == "__main__":
    main()
