"""The seq2seq suite's protocols: where each row starts and how it is stopped, the suite's settings per algorithm,
the papers' tables as presets (``seqrl bench seq2seq --preset NAME``) and ERAC's ablation rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..algorithms import config_fields, resolve_algorithm

PROTOCOLS = ("finetune", "scratch")
MONITORS: dict[str, Literal["min", "max"]] = {"valid_ce": "min", "valid_reward": "max", "valid_bleu": "max"}
"""Validation metrics that can stop training and pick its checkpoint, and their direction."""


PROTOCOL: dict[str, dict[str, Any]] = {
    "raml": {"proposal": "ngram", "include_reference": True, "normalization": "self", "density_correction": False},
    "reinforce": {"baseline": "self_critical"},
    "spg": {"guide_reward": "hamming", "reward_temperature": 0.5, "num_samples": 2},
}
"""The suite's settings for some algorithms, beside each algorithm's own defaults (which ``seqrl train`` and the
API use): RAML as the papers run it (y* plus n-gram replacements, softmax(R/τ) weights over the candidates; over
a translation vocabulary, the exact default's q ∝ exp(BLEU/τ) on the whole space is nearly uniform over nonsense);
REINFORCE with the self-critical baseline (one sample per source suffices); SPG's proposal guided by hamming's
ΔR (vectorized; sentence BLEU's is not), its weights still by the suite's reward."""


@dataclass(frozen=True)
class Preset:
    """A paper's table as a run of the suite: its rows, the suite settings of its protocol (beneath ``--set``), the
    ``--quick`` changes on top of them, and per-algorithm settings (beneath ``--set ALGO.FIELD``)."""

    algos: tuple[str, ...]
    settings: dict[str, Any]
    quick: dict[str, Any]
    algorithm_settings: dict[str, dict[str, Any]]
    source: str
    extra_rows: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    """(label, algorithm, config overrides) rows after ``algos`` (an ablation row of the same paper)."""


_QUICK_PRESET = {"train_size": 300, "mle_epochs": 3, "finetune_epochs": 1, "patience": 3, "critic_epochs": 1}
"""``--quick`` with a preset: a smoke run that sizes the full one (every row, every phase, minutes)."""

PRESETS: dict[str, Preset] = {
    "erpo-table1": Preset(
        algos=("mle", "raml", "spg", "mixer", "scheduled_sampling", "interpolation"),
        settings={"task": "variant_translation", "protocol": "scratch", "mle_epochs": 30, "patience": 30,
                  "scratch_monitor": "valid_bleu", "finetune_epochs": 10, "finetune_monitor": "valid_bleu"},
        quick=_QUICK_PRESET,
        algorithm_settings={"raml": {"beta": 0.4, "num_samples": 10}},
        source="[ERPO] Sec. 5 and App. C.2, and the authors' Texar code (examples/seq2seq_exposure_bias): MLE, "
               "RAML (10 n-gram samples, τ = 0.4), scheduled sampling (k = 500) and interpolation (λ = (0.04, 0, "
               "0.96), ±0.06 on each drop of validation BLEU, checked every epoch) each train from a random start "
               "for a fixed number of epochs (config_iwslt14.py: 50; here 30, for CPU time: MLE's validation CE "
               "stops improving after 19–32 epochs on this task, docs/seq2seq-task.md) with validation every epoch "
               "and the test score of the best validation BLEU (no early stopping); SPG and MIXER, for which the "
               "paper gives no protocol beyond MIXER's advantage R(y) − R(y*_{1:m}), fine-tune the MLE policy (10 "
               "epochs, best validation "
               "BLEU) beside the equal-budget control mle_continued. Model, lr and batch are the task's "
               "(docs/seq2seq-task.md), not IWSLT's."),
    "critics-table1": Preset(
        algos=("mle", "raml", "vaml", "ac", "erac"),
        settings={"task": "variant_translation", "protocol": "scratch", "reward": "bleu_scaled", "mle_epochs": 30,
                  "patience": 30, "scratch_monitor": "valid_bleu", "finetune_epochs": 10,
                  "finetune_monitor": "valid_bleu", "critic_phase": "own", "critic_epochs": 20, "critic_patience": 3},
        quick=_QUICK_PRESET,
        algorithm_settings={
            "raml": {"reward": "bleu", "beta": 1.0, "num_samples": 5},
            "vaml": {"weight_reward": "bleu", "weight_tau": 1.0, "tau": 0.4, "kappa": 0.2, "num_samples": 5,
                     "q_num_samples": 5},
            "erac": {"actor_entropy": "normalized", "beta": 0.1},
            "ac": {"actor_entropy": "normalized", "beta": 0.1},
        },
        extra_rows=(("erac[no future entropy]", "erac", {"future_entropy": False}),),
        source="[VAML/ERAC] Sec. 6.1, App. B and Tables 5–6, read with the authors' code (zihangdai/ERAC-VAML): the "
               "pay-off is sentence BLEU × |y*| (Sec. 6.1; get_rewards(scale_reward=True)) for the critics' token "
               "rewards (train_critic.py, train_erac.py, train_q.py); RAML and VAML train from a random start "
               "(train_vaml.py builds a new actor) with M = 5 (y* and 4 n-gram replacements) weighted by "
               "softmax(sentence BLEU), i.e. unscaled BLEU at τ = 1 (train_vaml.py; Table 5's τ = 0.4 with the "
               "scaled pay-off would put weight e^-8 on every replacement), VAML's Q-network (τ = 0.4, κ = 0.2) "
               "trained first as its own phase (train_q.py); AC and ERAC fine-tune the MLE actor after their critic "
               "is pretrained with the actor fixed as its own phase to convergence (App. B.3, train_critic.py), "
               "with Table 6's rates, λ_var = 0.001 on the variance of Q (Q_all.var(2)), Adam β1 = 0 in joint "
               "training (train_erac.py) and the actor's entropy term normalized as train_erac.py does it, and the "
               "target network's rate β = 0.1 (Table 3: 29.32 validation BLEU against 29.41 at Table 6's 0.001; "
               "at 0.001 the target moves 1 − 0.999^640 = 47% of the way in the whole ≤ 640-step critic phase; on "
               "validation, the critic's squared error against the sampled returns after 10 epochs was 3.38 at "
               "β = 0.1, 6.46 at 0.01 and 9.97 at 0.001, the returns' variance 6.49: benchmarks/"
               "critic_target_probe.py, docs/benchmarks.md); they are compared with the equal-budget control "
               "mle_continued. Scratch rows: 30 epochs (the authors' train_actor.py / train_vaml.py: 30), best "
               "validation BLEU; fine-tuning: 10 epochs. Model, lr and batch are the task's "
               "(docs/seq2seq-task.md). The row erac[no future entropy] (τ kept in the actor, 0 in the critic's "
               "target) is Table 4's ablation."),
}
"""The papers' tables as suite runs (``seqrl bench seq2seq --preset NAME``); each setting cites its source."""


def preset_settings(name: str | None, quick: bool) -> dict[str, Any]:
    """The suite settings preset ``name`` sets (its ``quick`` ones on top under ``--quick``); {} for None."""
    if name is None:
        return {}
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {tuple(PRESETS)}")
    preset = PRESETS[name]
    return {**preset.settings, **(preset.quick if quick else {}), "preset": name}


def protocol_settings(name: str, eval_every: int) -> dict[str, Any]:
    """The suite's settings for algorithm ``name``: :data:`PROTOCOL`'s, and its own validation checks (where it
    schedules on them) at the suite's evaluation interval."""
    settings = dict(PROTOCOL.get(name, {}))
    if "check_every" in config_fields(resolve_algorithm(name)):
        settings["check_every"] = eval_every
    return settings


TABLE3_BETAS = (0.001, 0.01, 0.1, 1.0)
TABLE3_LAMBDA_VARS = (0.0, 0.001)


def ablation_label(beta: float, lambda_var: float) -> str:
    """The row label of ERAC at target rate ``beta`` and smoothing ``lambda_var`` in the ablation's results."""
    return f"erac[beta={beta:g},lambda_var={lambda_var:g}]"


def ablation_rows(betas: tuple[float, ...] | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, algorithm, config overrides) of ERAC's ablation ([VAML/ERAC] Tables 3–4): MLE and AC for
    reference, ERAC at every β × λ_var (β = 1: no target network; λ_var = 0: no smoothing), and ERAC
    with τ kept in the actor but set to 0 in the critic ("w/o future entropy")."""
    rows: list[tuple[str, str, dict[str, Any]]] = [("mle", "mle", {}), ("ac", "ac", {})]
    for beta in betas or TABLE3_BETAS:
        for lambda_var in TABLE3_LAMBDA_VARS:
            rows.append((ablation_label(beta, lambda_var), "erac",
                         {"beta": beta, "lambda_var": lambda_var}))
    rows.append(("erac[no future entropy]", "erac", {"future_entropy": False}))
    return rows


CONTROL = "mle_continued"
"""The equal-budget control of the fine-tuning rows under protocol ``scratch``."""
