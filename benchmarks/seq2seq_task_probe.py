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
        --task-kwargs '{"particle_prob": 0.3}' --seeds 0 1 --out runs/task/d.jsonl

The suite's settings can be changed with ``--set key=value`` (as ``seqrl bench seq2seq --set``). With
``--oracle-only`` nothing is trained: it prints the task's ceiling, the BLEU of its most probable output, the
exposure drop of a perfect rule-follower (``rule_drop``) and the BLEU of decodes that add the optional particle
after chosen words (``particle_decodes``, chosen on the training references).
"""

from __future__ import annotations

import argparse
import itertools
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


def rule_drop(task: VariantTranslationTask, data_seed: int) -> dict[str, float]:
    """The exposure drop of a perfect predictor: :func:`seqrl.metrics.exposure_bias`'s corruption (same generator,
    positions and substitutes as the suite's, seeded by ``data_seed``) scored on a predictor that knows the
    generating process and reads the register of the word before from the prefix it is given (the agreement
    rule), with the alignment to the source taken from the reference. Under ``agreement`` a substitute in the
    other register legitimately changes the words after it: this is the part of the drop the rule causes, not
    the policy's fragility."""
    test = task.split("test")
    rows = torch.nonzero(test.lengths >= 2).flatten()
    data = test.index(rows)
    vocab_ids = torch.tensor(task.vocab.symbol_ids)
    generator = torch.Generator().manual_seed(data_seed)
    B = data.tokens.shape[0]
    position = (torch.rand(B, generator=generator) * (data.lengths - 1).float()).long()
    offset = torch.randint(1, vocab_ids.numel(), (B,), generator=generator)
    rank = torch.searchsorted(vocab_ids, data.tokens[torch.arange(B), position])
    substitute = vocab_ids[(rank + offset) % vocab_ids.numel()]
    pairs = task.pairs("test")
    hits = {"clean": 0, "corrupted": 0}
    count = 0
    for b in range(B):
        src, ref = pairs[int(rows[b])]
        next_word: list[str | None] = []  # per reference position: the source word whose form comes next
        for i, w in enumerate(src):
            next_word.append(w)
            if len(next_word) < len(ref) and ref[len(next_word)] == PARTICLE:
                next_word.append(src[i + 1] if i + 1 < len(src) else None)
        next_word.append(None)  # EOS
        targets = [*ref, "<eos>"]
        s = int(position[b])
        for name in hits:
            prefix = list(ref)
            if name == "corrupted":
                prefix[s] = task.vocab.itos[int(substitute[b])]
            for t in range(s + 1, len(targets)):
                w = next_word[t]
                if w is None:
                    guess = "<eos>"
                else:
                    words = [x for x in prefix[:t] if x != PARTICLE]
                    register = int(bool(words) and words[-1].endswith("'")) if task.agreement else 0
                    guess = task._form(w, 0 if task.ambiguous[w] and task.minority < 0.5 else register)
                hits[name] += guess == targets[t]
        count += len(targets) - s - 1
    return {"rule_clean_accuracy": 100 * hits["clean"] / count,
            "rule_drop": 100 * (hits["clean"] - hits["corrupted"]) / count}


def particle_decodes(task: VariantTranslationTask, top: int = 3) -> list[dict[str, Any]]:
    """Deterministic decodes that differ from the mode only in where they add the particle: every register at 0,
    and ``la`` after each occurrence of a chosen subset of the particle-taking words. The subsets are ranked by
    corpus BLEU on the *training* references (all 2^k, k particle-taking words), and the ``top`` ones are scored
    on test: corpus BLEU and mean sentence BLEU (the suite's ``bleu`` reward). The empty subset is the mode."""
    from sacrebleu.metrics import BLEU

    corpus_metric = BLEU(tokenize="none")
    sentence_metric = BLEU(effective_order=True, smooth_method="exp", tokenize="none")
    taking = [w for w in task.source_words if task.takes_particle[w]]

    def decode(subset: frozenset[str], split: str) -> list[str]:
        return [" ".join(f for w in src for f in [task._form(w, 0)] + ([PARTICLE] if w in subset else []))
                for src, _ in task.pairs(split)]

    refs = {split: task.split(split).to_strings(task.vocab) for split in ("train", "test")}
    subsets = [frozenset(c) for k in range(len(taking) + 1) for c in itertools.combinations(taking, k)]
    ranked = sorted(subsets, key=lambda c: -corpus_metric.corpus_score(decode(c, "train"), [refs["train"]]).score)
    out = []
    for subset in [frozenset(), *ranked[:top]]:
        hyps = decode(subset, "test")
        out.append({"particle_after": sorted(subset),
                    "test_bleu": corpus_metric.corpus_score(hyps, [refs["test"]]).score,
                    "test_sentence_bleu": statistics.fmean(sentence_metric.sentence_score(h, [r]).score
                                                           for h, r in zip(hyps, refs["test"]))})
    return out


def oracle_report(task: PairTask, data_seed: int) -> dict[str, Any]:
    """What the task allows, without training: the teacher-forced ceiling, the mode's BLEU, the exposure drop of
    a perfect rule-follower, and the particle decodes (the BLEU-better-than-mode outputs)."""
    test = task.split("test")
    refs = test.to_strings(task.vocab)
    report: dict[str, Any] = {}
    if isinstance(task, VariantTranslationTask):
        report["tf_ceiling"] = 100 * task.token_ceiling("test")
        report["oracle_bleu"] = corpus_bleu([" ".join(task.translate(src)) for src, _ in task.pairs("test")], refs)
        report.update(rule_drop(task, data_seed))
        if any(task.takes_particle.values()) and task.particle_prob > 0:
            report["particle_decodes"] = particle_decodes(task)
    return report


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
        if isinstance(task, VariantTranslationTask):
            record.metrics.update(rule_drop(task, st.data_seed))
        return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="variant_translation")
    parser.add_argument("--task-kwargs", default="{}", help="JSON object of the task's constructor arguments")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", action="append", default=[], help="suite setting key=value")
    parser.add_argument("--out", type=Path, help="JSON lines, one per seed (appended)")
    parser.add_argument("--oracle-only", action="store_true", help="print what the task allows (no training)")
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
    if args.oracle_only:
        st = suite.settings_for(options)
        print(json.dumps({"task": args.task, "task_kwargs": ProbeSuite.task_kwargs,
                          **oracle_report(suite.build_task(st), st.data_seed)}, indent=1))
        return
    if args.out is None:
        parser.error("--out is required unless --oracle-only")
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
