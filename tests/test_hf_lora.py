"""LoRA through peft (extra seqrl[peft]): only the adapters train, a frozen copy shares the base weights (no second
copy: the same storage), saving for transformers (merged) or peft (adapters), checkpoints, and DPG/KL-control
running on it with their frozen copies."""

from __future__ import annotations

import pytest
import torch
from test_hf_prompts import PROMPTS
from tiny_lm import MAX_LEN, write_tiny_lm
from torch import nn

from seqrl import exact
from seqrl.algorithms import make_algorithm
from seqrl.policies.hf import HFCausalLMPolicy
from seqrl.rewards.base import FunctionReward
from seqrl.training import FitConfig, fit, load_checkpoint, save_checkpoint

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

LORA = {"r": 4, "lora_alpha": 8, "init_lora_weights": False}  # random B too: π differs from the base model


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    return write_tiny_lm(tmp_path_factory.mktemp("tiny-gpt2-lora"))


@pytest.fixture
def policy(lm_dir) -> HFCausalLMPolicy:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return HFCausalLMPolicy.from_pretrained(lm_dir, max_len=MAX_LEN, lora=LORA)


@pytest.fixture(scope="module")
def space(lm_dir):
    plain = HFCausalLMPolicy.from_pretrained(lm_dir, max_len=MAX_LEN)
    return exact.enumerate_sequences(plain.vocab, MAX_LEN)


def storage_bytes(*modules: nn.Module) -> int:
    """Bytes of the distinct storages behind the modules' parameters and buffers (shared storage counted once)."""
    seen: dict[int, int] = {}
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers(), *getattr(module, "model", nn.Module()).parameters()]:
            storage = tensor.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def scores(policy, space, prompts=None):
    with torch.no_grad():
        return exact.policy_log_probs(policy, space, prompts)


def test_only_the_adapters_train(policy, space):
    trainable = [name for name, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    base = {name: p.detach().clone() for name, p in policy.named_parameters() if not p.requires_grad}
    before = scores(policy, space)
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=0.05)
    loss = -policy.sequence_log_prob(space.index(list(range(8)))).mean()
    loss.backward()
    optimizer.step()
    assert all(torch.equal(p, base[name]) for name, p in policy.named_parameters() if not p.requires_grad)
    assert not torch.allclose(scores(policy, space), before)


def test_frozen_copy_shares_the_base_weights(policy, space):
    prompts = policy.vocab.encode_prompts(PROMPTS[:2])
    frozen = policy.frozen_copy()
    assert frozen.model is policy.model  # one model: the base weights exist once
    base_weight = policy.model.get_base_model().transformer.h[0].attn.c_attn.base_layer.weight
    assert base_weight.untyped_storage().data_ptr() == frozen.model.get_base_model().transformer.h[0].attn.c_attn \
        .base_layer.weight.untyped_storage().data_ptr()
    assert not any(p.requires_grad for p in frozen.parameters())
    # π's own adapter still trains; the copy's adapter (in the same model) does not.
    assert all(p.requires_grad == ("seqrl_frozen_" not in n) for n, p in policy.named_parameters() if "lora_" in n)
    torch.testing.assert_close(scores(frozen, space, prompts.index([1])), scores(policy, space, prompts.index([1])))
    # π trains; its frozen copy does not move, until it takes π's weights (DPG's q ← π_θ).
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=0.05)
    frozen_before = scores(frozen, space)
    for _ in range(3):
        optimizer.zero_grad()
        (-policy.sequence_log_prob(space.index(list(range(8)))).mean()).backward()
        optimizer.step()
    torch.testing.assert_close(scores(frozen, space), frozen_before, atol=0, rtol=0)
    assert not torch.allclose(scores(policy, space), frozen_before)
    frozen.load_weights_from(policy)
    torch.testing.assert_close(scores(frozen, space), scores(policy, space))
    # The copy's eval() does not put π in eval mode (the model is shared, not a submodule of the copy).
    policy.train()
    frozen.eval()
    assert policy.model.training and policy.training
    # State dicts: π's holds its own weights only; the copy's holds its adapter; both load back.
    assert not any("seqrl_frozen_" in key for key in policy.state_dict())
    assert frozen.state_dict() and all(key.startswith("adapter.") for key in frozen.state_dict())
    pair = nn.ModuleDict({"policy": policy, "proposal": frozen})
    saved = {k: v.clone() for k, v in pair.state_dict().items()}
    expected = scores(frozen, space)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.1)
    pair.load_state_dict(saved)
    torch.testing.assert_close(scores(frozen, space), expected)


def test_lora_memory_no_second_copy(lm_dir):
    plain = HFCausalLMPolicy.from_pretrained(lm_dir, max_len=MAX_LEN)
    with_copy = storage_bytes(plain, plain.frozen_copy())
    assert with_copy >= 2 * storage_bytes(plain) - 64  # a deep copy: the model twice
    lora = HFCausalLMPolicy.from_pretrained(lm_dir, max_len=MAX_LEN, lora=LORA)
    alone = storage_bytes(lora)
    adapter = sum(p.numel() * p.element_size() for n, p in lora.named_parameters() if "lora_" in n)
    # The frozen copy adds one adapter's weights (and its few bytes of vocabulary masks), not a model.
    extra = storage_bytes(lora, lora.frozen_copy()) - alone - adapter
    assert 0 <= extra < 100, extra


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft's own loader, called here
def test_save_pretrained_merged_loads_without_peft(policy, space, tmp_path):
    out = policy.eval().save_pretrained(tmp_path / "merged")
    model = transformers.AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    assert type(model).__name__ == "GPT2LMHeadModel"
    loaded = HFCausalLMPolicy.from_pretrained(out, max_len=MAX_LEN)
    assert loaded.adapter is None
    prompts = policy.vocab.encode_prompts(PROMPTS[:2])
    torch.testing.assert_close(scores(loaded, space, prompts.index([1])), scores(policy, space, prompts.index([1])),
                               atol=1e-5, rtol=0)
    assert any("lora_" in n for n, _ in policy.named_parameters())  # the live model keeps its adapters
    # Adapters alone, in peft's format: PeftModel.from_pretrained(base, DIR).
    adapters = policy.save_pretrained(tmp_path / "adapters", merged=False)
    assert (adapters / "adapter_config.json").is_file()
    base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged", local_files_only=True)
    base = transformers.AutoModelForCausalLM.from_pretrained(
        write_tiny_lm(tmp_path / "base"), local_files_only=True)
    wrapped = peft.PeftModel.from_pretrained(base, adapters)
    again = HFCausalLMPolicy(policy.vocab, MAX_LEN, model=wrapped).eval()
    torch.testing.assert_close(scores(again, space), scores(policy, space), atol=1e-5, rtol=0)


def test_checkpoint_round_trip(policy, space, tmp_path):
    path = save_checkpoint(tmp_path / "lora.pt", policy.eval())
    loaded = load_checkpoint(path)
    assert loaded.adapter == "default" and loaded.config["lora"]["r"] == 4
    torch.testing.assert_close(scores(loaded, space), scores(policy, space))


def test_dpg_and_kl_control_run_on_a_lora_policy(policy, space):
    a = policy.vocab.stoi["a"]

    class PreferA:
        def log_potential(self, batch):
            return 1.5 * (batch.tokens == a).sum(1).float() - 0.5 * batch.lengths.float()

    dpg = make_algorithm("gdcpp", policy, potential=PreferA(), samples_per_step=16, lr=1e-2, check_every=1)
    assert dpg.proposal.model is policy.model  # q: a frozen adapter on π's model
    q_before = scores(dpg.proposal, space)
    fit(dpg, None, config=FitConfig(max_steps=4, progress=False, device="cpu"))
    assert dpg.proposal.model is policy.model
    # q moved only by taking π_θ's adapter (q ← π_θ), never by training.
    assert torch.equal(scores(dpg.proposal, space), q_before) == (dpg.proposal_updates == 0)
    reward = FunctionReward(lambda hyps: (hyps.tokens == a).sum(1).float(), "count_a", policy.vocab)
    before = scores(policy, space)
    control = make_algorithm("kl_control", policy, reward=reward, beta=0.5, samples_per_step=16, lr=1e-2)
    assert control.base.model is policy.model
    torch.testing.assert_close(scores(control.base, space), before)
    fit(control, None, config=FitConfig(max_steps=3, progress=False, device="cpu"))
    torch.testing.assert_close(scores(control.base, space), before, atol=0, rtol=0)  # a stays a
