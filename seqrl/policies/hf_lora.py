"""LoRA adapters for the ``hf`` policy through ``peft`` (optional extra: ``pip install seqrl[peft]``).

Only the adapters train (peft freezes the base weights). A frozen copy of a LoRA policy (DPG's proposal q,
KL-control's base a) is a second, frozen *adapter* on the same model, selected for the copy's forward passes,
so the base weights exist once: what :func:`add_frozen_adapter`, :func:`selected_adapter` and
:func:`copy_adapter` serve.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

LoraSpec = Any
"""What ``lora=`` takes: None (no adapters), True (peft's defaults), a dict of ``peft.LoraConfig`` settings, or a
``peft.LoraConfig``."""

FROZEN_PREFIX = "seqrl_frozen_"
"""Name prefix of the adapters that frozen copies own (left out of the trained policy's state dict)."""

_SETTINGS = ("r", "lora_alpha", "lora_dropout", "target_modules", "bias", "use_rslora", "fan_in_fan_out",
             "init_lora_weights")


class MissingExtraError(ImportError, ValueError):
    """An optional dependency that is not installed; the message says which extra installs it."""


def _peft() -> Any:
    try:
        import peft
    except ImportError as err:
        raise MissingExtraError(f"lora= needs peft: pip install seqrl[peft] ({err})") from None
    return peft


def is_lora(model: Any) -> bool:
    """Whether ``model`` is a peft model (adapters on a base model)."""
    return type(model).__module__.startswith("peft") and hasattr(model, "peft_config")


def apply_lora(model: nn.Module, lora: LoraSpec) -> nn.Module:
    """``model`` with LoRA adapters (named ``default``), base weights frozen: ``peft.get_peft_model``."""
    peft = _peft()
    if is_lora(model):
        raise ValueError("the model already carries peft adapters: pass the base model, or lora=None")
    if lora is True:
        config = peft.LoraConfig(task_type="CAUSAL_LM")
    elif isinstance(lora, dict):
        try:
            config = peft.LoraConfig(task_type="CAUSAL_LM", **lora)
        except TypeError as err:
            raise ValueError(f"lora={lora!r}: {err}") from None
    elif isinstance(lora, peft.LoraConfig):
        config = lora
    else:
        raise TypeError(f"lora= takes True, a dict of peft.LoraConfig settings or a LoraConfig, got "
                        f"{type(lora).__name__}")
    with quiet_peft():
        return peft.get_peft_model(model, config)


@contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence what peft says that is not the user's to act on."""
    with warnings.catch_warnings():  # peft (≤ 0.21) asks transformers ≥ 5.2 a question it has renamed
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        # GPT-2's Conv1D stores weights transposed; peft notices, sets fan_in_fan_out itself and says so
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*", category=UserWarning)
        yield


def lora_settings(model: Any) -> dict[str, Any]:
    """The adapter settings that rebuild ``model``'s adapters (for checkpoints), as plain data."""
    config = model.peft_config["default"]
    out: dict[str, Any] = {}
    for key in _SETTINGS:
        value = getattr(config, key, None)
        if isinstance(value, set | frozenset | tuple):
            value = sorted(value)
        if value is None or isinstance(value, bool | int | float | str | list):
            out[key] = value
    return out


def tuner_layers(model: nn.Module) -> list[Any]:
    """The modules peft wrapped with adapters."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def adapter_state(model: nn.Module, adapter: str) -> dict[str, Tensor]:
    """The weights of one adapter, keyed by module path without the adapter's name (tensors share the
    parameters' storage: writing into them writes the adapter)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    state: dict[str, Tensor] = {}
    for path, module in model.named_modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        for attr in module.adapter_layer_names:
            holder = getattr(module, attr, None)
            if not isinstance(holder, nn.ModuleDict | nn.ParameterDict) or adapter not in holder:
                continue
            value = holder[adapter]
            if isinstance(value, nn.Module):
                for key, tensor in value.state_dict(keep_vars=True).items():
                    state[f"{path}.{attr}.{key}"] = tensor
            else:
                state[f"{path}.{attr}"] = value
    return state


@torch.no_grad()
def copy_adapter(source_model: nn.Module, source: str, target_model: nn.Module, target: str) -> None:
    """Adapter ``target`` of ``target_model`` ← the weights of adapter ``source`` of ``source_model``."""
    src, dst = adapter_state(source_model, source), adapter_state(target_model, target)
    if src.keys() != dst.keys() or any(src[k].shape != dst[k].shape for k in src):
        raise ValueError(f"adapters {source!r} and {target!r} differ in shape: copy only between copies of one policy")
    for key, tensor in dst.items():
        tensor.copy_(src[key])


def add_frozen_adapter(model: Any, source: str) -> str:
    """A new frozen adapter on ``model``, a copy of adapter ``source``; returns its name. The model's other
    parameters keep their ``requires_grad`` and its train/eval mode."""
    taken = set(model.peft_config)
    number = 1
    while f"{FROZEN_PREFIX}{number}" in taken:
        number += 1
    name = f"{FROZEN_PREFIX}{number}"
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.add_adapter(name, copy.deepcopy(model.peft_config[source]))
    for p, flag in flags:
        p.requires_grad_(flag)
    copy_adapter(model, source, model, name)
    for tensor in adapter_state(model, name).values():
        tensor.requires_grad_(False)
    model.train(model.training)  # the new adapter's modules follow the model's mode
    return name


@contextmanager
def selected_adapter(layers: list[Any], adapter: str) -> Iterator[None]:
    """Forward passes inside use ``adapter`` alone (no ``requires_grad`` changes, unlike ``set_adapter``)."""
    saved = [layer._active_adapter for layer in layers]
    for layer in layers:
        layer._active_adapter = [adapter]
    try:
        yield
    finally:
        for layer, value in zip(layers, saved):
            layer._active_adapter = value


@contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """``model`` in train (or eval) mode inside, its own mode restored after."""
    was = model.training
    if was != training:
        model.train(training)
    try:
        yield
    finally:
        if was != training:
            model.train(was)


def drop_frozen_adapters(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """State-dict hook of a LoRA policy: its frozen copies' adapters are theirs, not part of its weights."""
    for key in [k for k in state_dict if k.startswith(prefix) and f".{FROZEN_PREFIX}" in k]:
        del state_dict[key]


def ignore_frozen_adapters(module: nn.Module, incompatible: Any) -> None:
    """Load-state-dict post hook of a LoRA policy: its frozen copies' adapters are not expected in its weights."""
    incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if f".{FROZEN_PREFIX}" not in k]


def save_merged(model: Any, adapter: str, directory: Path) -> None:
    """The base model with ``adapter`` merged into its weights, written by ``save_pretrained`` (from a copy: the
    live model keeps its adapters)."""
    with quiet_peft():
        merged = copy.deepcopy(model).merge_and_unload(adapter_names=[adapter])
        merged.save_pretrained(directory)
