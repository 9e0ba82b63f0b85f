"""Measure a candidate seq2seq task under the seq2seq suite's MLE training (docs/seq2seq-task.md).

Each seed runs the suite's own job (``Seq2SeqSuite.run_job``; protocol ``scratch`` with ``--algos mle``:
one MLE run from a random start, early stopping on validation CE), and adds to its record what the suite
does not measure:

* ``tf_accuracy``: next-token accuracy under teacher forcing on the test references (EOS included), beside
  ``tf_ceiling``, the best expected accuracy given the task's noise (``task.token_ceiling``);
* ``oracle_bleu``: test BLEU of the task's most probable output (``task.translate(src)``, what a perfect
  model's beam search returns), and ``mode_match``: the share of test sentences whose beam output is exactly
  that output;
* ``bleu_greedy``: test BLEU of greedy decoding; ``length_ratio``: beam output tokens / reference tokens;
* for ``variant_translation``: the share of words in register 1 and of particles per word, in the beam
  outputs (``hyp_*``) and the references (``ref_*``); and the policy's teacher-forced probability of each
  reference draw's minority outcome (register 1, the particle): mean and share over 1/2 (``p_*``).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/seq2seq_task_probe.py --task variant_translation \\
        --task-kwargs '{"agreement": true}' --seeds 0 1 --out runs/task/agree.jsonl

The suite's settings can be changed with ``--set key=value`` (as ``seqrl bench seq2seq --set``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from seqrl.bench.runner import BenchOptions
from seqrl.bench.seq2seq import Seq2SeqSettings, Seq2SeqSuite
from seqrl.envs.tasks import TASKS, PairTask
from seqrl.envs.variant import PARTICLE, VariantTranslationTask
from seqrl.metrics import corpus_bleu


def task_metrics(policy, task: PairTask, beam_hyps: list[str]) -> dict[str, float]:
    test = task.split("test")
    policy.eval()
    with torch.no_grad():
        batch = test.to(policy.device)
        log_dists = policy.log_dists(batch)
        pred = log_dists.argmax(-1)
        mask = torch.arange(batch.tokens.shape[1], device=batch.tokens.device)[None] < batch.lengths[:, None]
        tf_acc = float((pred == batch.tokens)[mask].float().mean())
        assert test.context is not None
        greedy = policy.greedy(1, test.context.to(policy.device)).batch.to_strings(task.vocab)
    refs = test.to_strings(task.vocab)
    out = {"tf_accuracy": 100 * tf_acc, "bleu_greedy": corpus_bleu(greedy, refs)}
    hyp_tokens, ref_tokens = [h.split() for h in beam_hyps], [r.split() for r in refs]
    out["length_ratio"] = sum(map(len, hyp_tokens)) / sum(map(len, ref_tokens))
    if isinstance(task, VariantTranslationTask):  # how often the beam output draws what the references draw
        for name, tokens in (("hyp", hyp_tokens), ("ref", ref_tokens)):
            words = [t for ts in tokens for t in ts if t != PARTICLE]
            out[f"{name}_register1"] = 100 * sum(t.endswith("'") for t in words) / max(1, len(words))
            out[f"{name}_particles"] = 100 * sum(t == PARTICLE for ts in tokens for t in ts) / max(1, len(words))
        out.update(draw_probabilities(task, log_dists.exp().cpu()))
    if hasattr(task, "token_ceiling"):
        out["tf_ceiling"] = 100 * task.token_ceiling("test")
    if hasattr(task, "translate"):
        try:
            mode = [" ".join(task.translate(src)) for src, _ in task.pairs("test")]
        except TypeError:  # a translate that needs a generator
            mode = []
        if mode:
            out["oracle_bleu"] = corpus_bleu(mode, refs)
            out["mode_match"] = 100 * sum(h == m for h, m in zip(beam_hyps, mode)) / len(mode)
    return out


def draw_probabilities(task: VariantTranslationTask, dists: torch.Tensor) -> dict[str, float]:
    """The policy's teacher-forced probability of the minority outcome where the references draw one: register 1
    at an ambiguous word (true probability ``task.minority``) and the particle at a particle slot (true
    ``task.particle_prob``): mean, and the share of draws where it exceeds 1/2 (where the mode flips)."""
    register, particle = [], []
    la = task.vocab.stoi.get(PARTICLE)
    for row, (src, ref) in enumerate(task.pairs("test")):
        j = 0
        for w in src:
            if task.ambiguous[w]:
                register.append(float(dists[row, j, task.vocab.stoi[task._form(w, 1)]]))
            j += 1
            if task.takes_particle[w] and la is not None:
                particle.append(float(dists[row, j, la]))
                j += ref[j : j + 1] == [PARTICLE]
    out = {}
    for name, values in (("register1", register), ("particle", particle)):
        if values:
            out[f"p_{name}_mean"] = sum(values) / len(values)
            out[f"p_{name}_over_half"] = 100 * sum(v > 0.5 for v in values) / len(values)
    return out


class ProbeSuite(Seq2SeqSuite):
    task_kwargs: dict[str, Any] = {}

    @staticmethod
    def build_task(st: Seq2SeqSettings) -> PairTask:
        if st.task == "toy_translation" or not ProbeSuite.task_kwargs:
            return Seq2SeqSuite.build_task(st)
        sizes = {"train_size": st.train_size, "valid_size": st.valid_size, "test_size": st.test_size,
                 "seed": st.data_seed}
        return TASKS.get(st.task)(**{**sizes, **ProbeSuite.task_kwargs})

    @staticmethod
    def _record(name, seed, params, policy, task, test, st, result):
        record = Seq2SeqSuite._record(name, seed, params, policy, task, test, st, result)
        best, _ = policy.beam_search(test.context.to(policy.device), beam_size=st.beam_size)
        record.metrics.update(task_metrics(policy, task, best.to_strings(task.vocab)))
        return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="variant_translation")
    parser.add_argument("--task-kwargs", default="{}", help="JSON object of the task's constructor arguments")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", action="append", default=[], help="suite setting key=value")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per seed (appended)")
    args = parser.parse_args(argv)
    ProbeSuite.task_kwargs = json.loads(args.task_kwargs)
    settings: dict[str, Any] = {"task": args.task, "protocol": "scratch"}
    for item in args.set:
        key, value = item.split("=", 1)
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    options = BenchOptions(seeds=tuple(args.seeds), algos=("mle",), progress=False, settings=settings)
    suite = ProbeSuite()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bleus = []
    for job in suite.jobs(options):
        start, cpu_start = time.perf_counter(), time.process_time()
        (record,) = suite.run_job(job, options)
        cpu_s = time.process_time() - cpu_start
        m = record.metrics
        row = {"task": args.task, "task_kwargs": ProbeSuite.task_kwargs, "settings": settings, "seed": record.seed,
               **m, "job_wall_s": time.perf_counter() - start, "job_cpu_s": cpu_s}
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        bleus.append(m["bleu"])
        print(f"seed {record.seed}: BLEU {m['bleu']:.2f} (greedy {m['bleu_greedy']:.2f}, oracle "
              f"{m.get('oracle_bleu', float('nan')):.2f}, mode match {m.get('mode_match', float('nan')):.1f}%) "
              f"tf acc {m['tf_accuracy']:.2f} / ceiling {m.get('tf_ceiling', float('nan')):.2f} "
              f"exposure drop {m['exposure_drop']:.2f} pp, best step {m['best_step']:.0f} of {m['steps']:.0f}, "
              f"{row['job_wall_s']:.0f} s wall, {cpu_s:.0f} s CPU", flush=True)
    if len(bleus) > 1:
        print(f"BLEU {statistics.fmean(bleus):.2f} ± {statistics.stdev(bleus):.2f} over {len(bleus)} seeds")


if __name__ == "__main__":
    sys.exit(main())
