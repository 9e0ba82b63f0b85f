"""Language models for real: a tiny GPT-2 and its tokenizer saved in a temporary directory (built from a config
and an in-memory vocabulary, nothing downloaded) and loaded back with ``HFCausalLMPolicy.from_pretrained``;
the tokenizer's vocabulary, prompts (batched = one at a time, sampled = teacher-forced, π(·|x) sums to 1 per
prompt, beam = the exact mode), saving for transformers, dropout, the cache API, and the sampling options."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

from seqrl import exact
from seqrl.policies import make_policy
from seqrl.policies.hf import HFCausalLMPolicy, tokenizer_vocab
from seqrl.training import load_checkpoint, save_checkpoint
from seqrl.types import BatchError, SequenceBatch, TokenizerVocab, Vocab

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from tiny_lm import GPT2_WORDS, LLAMA_WORDS, MAX_LEN, make_tokenizer, write_tiny_lm  # noqa: E402, F401


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    return write_tiny_lm(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture
def policy(lm_dir) -> HFCausalLMPolicy:
    return HFCausalLMPolicy.from_pretrained(lm_dir, max_len=MAX_LEN).eval()


@pytest.fixture(scope="module")
def space(lm_dir) -> SequenceBatch:
    vocab = tokenizer_vocab(transformers.AutoTokenizer.from_pretrained(lm_dir, local_files_only=True))
    return exact.enumerate_sequences(vocab, MAX_LEN)


PROMPTS = ["a", "b c a", "", "c c b a b"]  # different lengths, an empty one among them


def test_tokenizer_vocab_maps_special_tokens():
    gpt2 = tokenizer_vocab(make_tokenizer())
    # GPT-2: one <|endoftext|> is PAD, BOS and EOS; then the tokenizer's other ids in order.
    assert isinstance(gpt2, TokenizerVocab) and len(gpt2) == 6
    assert gpt2.model_ids.tolist() == [0, 0, 0, 1, 2, 3] and gpt2.symbols == ["a", "b", "c"]
    assert (gpt2.pad, gpt2.bos, gpt2.eos) == (0, 1, 2) and gpt2.stoi["<|endoftext|>"] == gpt2.eos
    prompts = gpt2.encode_prompts(["a b", "c", ""])
    assert prompts.to_lists() == [[3, 4], [5], []] and prompts.lengths.tolist() == [2, 1, 0]
    assert gpt2.encode("b a") == [4, 3, gpt2.eos]
    rows = SequenceBatch.from_lists([[3, 5, 2], [4, 2, 0]])
    assert gpt2.decode(rows) == ["a c", "b"] and gpt2.to_string([3, 4, 2, 5]) == "a b"  # EOS ends a row, PAD dropped
    assert gpt2.decode([3, 4]) == ["a", "b"]  # one row of ids: its tokens, as Vocab.decode gives them
    # Separate pad/bos/eos, and a tokenizer that adds BOS to every text: a prompt is exactly what it gives.
    llama = tokenizer_vocab(make_tokenizer(LLAMA_WORDS))
    assert llama.model_ids.tolist() == [0, 1, 2, 3, 4, 5] and llama.itos[:3] == ["<pad>", "<s>", "</s>"]
    assert llama.encode_prompts(["a b"]).to_lists() == [[llama.bos, 3, 4]]
    assert llama.encode("a b") == [3, 4, llama.eos]  # a completion or target: no special tokens, then EOS
    # Data only, and the same vocabulary (the same tokenizer behaviour) after a round trip.
    for vocab in (gpt2, llama):
        back = Vocab.from_state_dict(vocab.state_dict())
        assert isinstance(back, TokenizerVocab) and back == vocab
        assert back.model_ids.tolist() == vocab.model_ids.tolist() and back.decode(rows) == vocab.decode(rows)
    # A plain Vocab decodes a batch as space-joined symbols, and keeps decoding a row as before.
    plain = Vocab(["x", "y"])
    assert plain.decode(SequenceBatch.from_strings(["x y", "y"], plain)) == ["x y", "y"]
    assert plain.decode([3, 4, 2]) == ["x", "y"]
    no_eos = make_tokenizer()
    no_eos.eos_token = None
    with pytest.raises(ValueError, match="the tokenizer defines no EOS token"):
        tokenizer_vocab(no_eos)


def test_loaded_policy_uses_the_tokenizer_vocabulary(policy, lm_dir):
    assert isinstance(policy.vocab, TokenizerVocab) and len(policy.vocab) == 6
    assert type(policy.model).__name__ == "GPT2LMHeadModel" and policy.model.config.n_layer == 2
    assert policy.accepts_prompts and not policy.is_conditional


def test_prompts_of_different_lengths_batched_equal_one_at_a_time(policy):
    vocab = policy.vocab
    prompts = vocab.encode_prompts(PROMPTS)
    completions = SequenceBatch.from_strings(["a b c", "c", "b b", "a"], vocab)
    with torch.no_grad():
        batched = policy.log_dists(completions.with_context(prompts))
        for i in range(len(PROMPTS)):
            alone = policy.log_dists(completions.index([i]).with_context(prompts.index([i])))
            width = alone.shape[1]
            torch.testing.assert_close(batched[i:i + 1, :width], alone, atol=1e-5, rtol=0)
    # The prompt matters: the first completion token's distribution differs between prompts.
    assert float((batched[0, 0].exp() - batched[1, 0].exp()).abs().max()) > 0.05
    # No prompt at all is the unconditional policy, which an empty prompt equals (both start from BOS).
    with torch.no_grad():
        unconditional = policy.log_dists(completions.index([2]))
    torch.testing.assert_close(batched[2:3, : unconditional.shape[1]], unconditional, atol=1e-5, rtol=0)


def test_sampled_log_probs_equal_teacher_forced_with_prompts(policy):
    prompts = policy.vocab.encode_prompts(PROMPTS)
    samples = policy.sample(64, prompts, generator=torch.Generator().manual_seed(0))
    assert samples.batch.batch_size == 4 * 64 and samples.batch.context is not None
    assert samples.batch.context.to_lists()[::64] == prompts.to_lists()  # each prompt's rows, in place
    with torch.no_grad():
        torch.testing.assert_close(samples.logp_t, policy.token_log_probs(samples.batch), atol=1e-5, rtol=0)
    rows = samples.batch.to_lists()
    assert all(row[-1] == policy.vocab.eos and len(row) <= MAX_LEN and min(row) > policy.vocab.bos for row in rows)
    # Sampling batched is sampling one prompt at a time: the same per-row scores.
    with torch.no_grad():
        for i in (0, 1):
            one = samples.batch.index(list(range(64 * i, 64 * i + 8)))
            torch.testing.assert_close(policy.sequence_log_prob(one), samples.logp[64 * i: 64 * i + 8], atol=1e-5,
                                       rtol=0)


def test_enumerated_distribution_per_prompt_sums_to_one(policy, space):
    prompts = policy.vocab.encode_prompts(PROMPTS)
    dists = []
    for i in range(len(PROMPTS)):
        pi = exact.policy_distribution(policy, space, prompts.index([i]))
        assert abs(float(pi.sum()) - 1.0) < 1e-6 and bool((pi > 0).all())
        dists.append(pi)
    assert exact.tvd(dists[0], dists[1]) > 0.05  # conditioned on the prompt
    # Sampling follows the enumerated π(·|x) (many samples: a loose, seeded check).
    many = policy.sample(3000, prompts.index([1]), generator=torch.Generator().manual_seed(1)).batch.to_lists()
    index = {tuple(row): j for j, row in enumerate(space.to_lists())}
    freq = torch.bincount(torch.tensor([index[tuple(r)] for r in many]), minlength=space.batch_size).double() / 3000
    assert exact.tvd(freq, dists[1]) < 0.07


def test_greedy_and_beam_search_with_prompts_agree_with_enumeration(policy, space):
    prompts = policy.vocab.encode_prompts(PROMPTS)
    best, scores = policy.beam_search(prompts, beam_size=27)  # as wide as the widest level: the exact mode
    greedy = policy.greedy(1, prompts)
    one, score_one = policy.beam_search(prompts, beam_size=1)
    assert one.to_lists() == greedy.batch.to_lists()
    torch.testing.assert_close(score_one, greedy.logp, atol=1e-5, rtol=0)
    for i in range(len(PROMPTS)):
        with torch.no_grad():
            logp = exact.policy_log_probs(policy, space, prompts.index([i]))
        mode = int(logp.argmax())
        assert best.to_lists()[i] == space.to_lists()[mode]
        assert abs(float(scores[i]) - float(logp[mode])) < 1e-5


def test_save_pretrained_loads_with_plain_transformers(policy, space, tmp_path):
    out = policy.save_pretrained(tmp_path / "model")
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    model = transformers.AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert tokenizer.pad_token is None  # the tokenizer as given: nothing added
    # transformers' own log-probability of a prompt's completion equals the policy's.
    prompt, completion = "b c a", "a b"
    ids = tokenizer(prompt + " " + completion + " <|endoftext|>", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
    n_prompt = len(tokenizer(prompt)["input_ids"])
    theirs = float(logits.log_softmax(-1)[n_prompt - 1:].gather(1, ids[0, n_prompt:, None]).sum())
    batch = SequenceBatch.from_lists([policy.vocab.encode(completion)],
                                     context=policy.vocab.encode_prompts([prompt]))
    with torch.no_grad():
        ours = float(policy.sequence_log_prob(batch))
    assert abs(ours - theirs) < 1e-5
    reloaded = HFCausalLMPolicy.from_pretrained(out, max_len=MAX_LEN).eval()
    torch.testing.assert_close(exact.policy_log_probs(reloaded, space), exact.policy_log_probs(policy, space))


def test_a_hub_name_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="seqrl never downloads") as err:
        HFCausalLMPolicy.from_pretrained("gpt2", max_len=MAX_LEN)
    assert "\n" not in str(err.value) and "'gpt2' is not a local directory" in str(err.value)
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        HFCausalLMPolicy.from_pretrained(tmp_path / "weights.bin", max_len=MAX_LEN)
    with pytest.raises(ValueError, match="has no setting 'no_such_field'"):
        HFCausalLMPolicy.from_pretrained(write_tiny_lm(tmp_path / "m"), max_len=MAX_LEN, no_such_field=1)


def test_dropout_override_works_for_a_loaded_model(tmp_path, space):
    directory = write_tiny_lm(tmp_path / "dropout", dropout=0.5)

    def scores(policy):  # in train mode: what an algorithm's update computes
        with torch.no_grad():
            return policy.train().sequence_log_prob(space)

    noisy = HFCausalLMPolicy.from_pretrained(directory, max_len=MAX_LEN)
    assert not torch.equal(scores(noisy), scores(noisy))
    quiet = HFCausalLMPolicy.from_pretrained(directory, max_len=MAX_LEN, dropout=0.0)
    first = scores(quiet)
    torch.testing.assert_close(first, scores(quiet), atol=0, rtol=0)
    torch.testing.assert_close(first, exact.policy_log_probs(noisy, space).detach(), atol=1e-5, rtol=0)  # eval mode
    # A model the user loaded and passed in gets it too.
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, local_files_only=True)
    torch.testing.assert_close(scores(HFCausalLMPolicy(quiet.vocab, MAX_LEN, model=model, dropout=0.0)), first,
                               atol=1e-5, rtol=0)


def test_no_deprecated_cache_argument_and_the_checkpoint_round_trip(policy, space, tmp_path, monkeypatch):
    prompts = policy.vocab.encode_prompts(PROMPTS)
    once = logging.Logger.warning_once  # transformers adds it to Logger; its deprecations are logged through it

    def deprecated(self, message, *args, **kwargs):  # logged once per process: catch them all, from the start
        assert "deprecat" not in str(message).lower(), f"transformers warned: {message}"
        return once(self, message, *args, **kwargs)

    monkeypatch.setattr(logging.Logger, "warning_once", deprecated)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        policy.sample(4, prompts)
        policy.beam_search(prompts, beam_size=3)
        policy.sequence_log_prob(policy.sample(2).batch)
    path = save_checkpoint(tmp_path / "hf.pt", policy.set_sampling(top_k=2))
    loaded = load_checkpoint(path)
    assert isinstance(loaded.vocab, TokenizerVocab) and loaded.vocab == policy.vocab
    assert loaded.sampling.top_k == 2
    torch.testing.assert_close(exact.policy_log_probs(loaded, space, prompts.index([1])),
                               exact.policy_log_probs(policy, space, prompts.index([1])))


def test_a_prompt_too_long_for_the_model_is_named(tmp_path):
    directory = write_tiny_lm(tmp_path / "short", n_positions=6)
    policy = HFCausalLMPolicy.from_pretrained(directory, max_len=MAX_LEN)
    with pytest.raises(BatchError, match="a prompt of 5 tokens and max_len=4 need 8 positions; the model has 6"):
        policy.sample(1, policy.vocab.encode_prompts(["a b c a b"]))
    with pytest.raises(BatchError, match="prompt token ids outside"):
        policy.sample(1, SequenceBatch.from_lists([[7]]))


# --- sampling options: on every policy, the log-probs are those of what was sampled ---------------------------
OPTIONS = [dict(temperature=0.5), dict(temperature=2.0), dict(top_k=2), dict(top_p=0.6),
           dict(temperature=0.7, top_k=3, top_p=0.9)]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_sampling_options_sample_and_score_one_distribution(policy, space, options):
    lstm = make_policy("lstm", Vocab(["a", "b", "c"]), MAX_LEN, seed=0, temperature=options.get("temperature", 1.0))
    lstm.set_sampling(**options)
    prompts = policy.vocab.encode_prompts(["b c a"])
    for model, context in ((policy.set_sampling(**options), prompts), (lstm.eval(), None)):
        samples = model.sample(200, context, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(samples.logp_t, model.token_log_probs(samples.batch), atol=1e-5, rtol=0)
            pi = exact.policy_distribution(model, exact.enumerate_sequences(model.vocab, MAX_LEN),
                                           context if context is None else context.index([0]))
        assert abs(float(pi.sum()) - 1.0) < 1e-6
        if "top_k" in options or "top_p" in options:
            assert bool((pi == 0).any())  # truncation: sequences outside the kept sets have probability 0
            with torch.no_grad():
                dists = model.log_dists(samples.batch)
            kept = (dists > float("-inf")).sum(-1)[samples.batch.mask_t]
            if "top_k" in options:
                assert int(kept.max()) <= options["top_k"]
    assert make_policy("lstm", Vocab(["a"]), 3, top_p=0.5).extra_state()["top_p"] == 0.5


def test_sampling_options_default_off_and_checked(policy):
    assert policy.sampling.is_default and "temperature" not in policy.extra_state()
    for bad in (dict(temperature=0.0), dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5), dict(top_k=1.5)):
        with pytest.raises(ValueError):
            policy.set_sampling(**bad)
    with pytest.raises(ValueError, match="unknown sampling option"):
        policy.set_sampling(typical_p=0.9)
    with pytest.raises(ValueError, match="temperature must be"):
        make_policy("lstm", Vocab(["a"]), 3, temperature=-1.0)


def test_the_inverse_cdf_draw_samples_exactly_the_distribution():
    from seqrl.policies.base import inverse_cdf_draw

    probs = torch.tensor([0.0, 0.5, 0.0, 0.2, 0.3 - 1e-6, 1e-6, 0.0])  # zeros first, inside and last
    log_probs = probs.log()[None].expand(200_000, -1)
    drawn = inverse_cdf_draw(log_probs, torch.Generator().manual_seed(0))
    counts = torch.bincount(drawn, minlength=len(probs)).double() / drawn.numel()
    assert bool((counts[probs == 0] == 0).all())
    torch.testing.assert_close(counts, probs.double(), atol=4e-3, rtol=0)
    # A row whose last positive entry holds all the mass up to rounding: never past it.
    edge = torch.tensor([[float("-inf"), 0.0, float("-inf")]]).expand(1000, -1)
    assert bool((inverse_cdf_draw(edge) == 1).all())
