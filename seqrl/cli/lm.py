"""``seqrl train … --model DIR``: a language model and its tokenizer from a local directory (never a download),
trained on ``--prompts``, written back with ``save_pretrained`` to ``OUT/model``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from .common import UsageError, split_sets, with_option

DEFAULT_MAX_LEN = 64
"""Tokens a completion may have, EOS included, unless ``--policy-set max_len=N`` says otherwise (at most half
the model's positions)."""
MODEL_SETTINGS: dict[str, Any] = {"max_len": int, "dropout": float | None, "temperature": float, "top_k": int,
                                  "top_p": float, "lora": Any}
"""``--policy-set`` keys of a model (any other key sets that field of the model's config)."""


def model_directory(args: argparse.Namespace) -> Path | None:
    """The model directory the run starts from: ``--model DIR``, or ``--init DIR`` (a saved ``OUT/model``)."""
    if args.model is not None:
        return Path(args.model)
    if args.init is not None and Path(args.init).is_dir():
        return Path(args.init)
    return None


def check_model_options(args: argparse.Namespace, cls: Any) -> Path | None:
    """The combinations a model run cannot take, refused in one line each; the model directory (or None)."""
    directory = model_directory(args)
    if directory is None:
        if args.env is None:
            raise UsageError("give --env ENV (a seqrl task) or --model DIR (a language model and its tokenizer)")
        return None
    option = "--model" if args.model is not None else "--init"
    if args.model is not None and args.init is not None:
        raise UsageError("--model DIR starts from a model, --init DIR continues from a saved one: give one")
    if args.env is not None:
        raise UsageError(f"{option} brings its tokenizer's vocabulary; a seqrl env has its own: drop --env")
    if args.policy is not None:
        raise UsageError(f"{option} is the policy: drop --policy")
    if not directory.is_dir():
        raise UsageError(f"{option} {str(directory)!r} is not a local directory: seqrl never downloads a model; "
                         "save it with save_pretrained (model and tokenizer) and give that directory")
    if not (directory / "config.json").is_file():
        raise UsageError(f"{option} {str(directory)!r} holds no config.json: not a saved transformers model")
    if cls.uses_data and not (cls.learns_from_prompts and args.prompts is not None):
        raise UsageError(f"{cls.name} learns from a task's references; with {option}, train an algorithm that "
                         "draws its own samples (kl_control, dpg, gdcpp, fdpg, cdpg, …), or reinforce, on --prompts")
    if cls.requires.potential and args.scorer is None and args.potential is None:
        raise UsageError(f"{cls.name} trains toward a potential: give --scorer module:function (P = a·b, a the "
                         "model) or --potential module:function (log P itself)")
    return directory


def quiet_transformers(progress: bool) -> None:
    """transformers' own progress bars (loading, writing weights) follow ``--progress``/``--no-progress``."""
    from transformers.utils import logging

    if progress:
        logging.enable_progress_bar()
    else:
        logging.disable_progress_bar()


def model_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``--policy-set`` for a model: its keys (:data:`MODEL_SETTINGS`) read by type, others as JSON (else text)."""
    from ..config import parse_text

    def read(key: str, text: str) -> Any:
        annotation = MODEL_SETTINGS.get(key, Any)
        return with_option("--policy-set", lambda: parse_text(f"--policy-set {key}", text, annotation))

    settings = {k: read(k, v) for k, v in split_sets(args.policy_set, "--policy-set").items()}
    _check_model_settings(settings)
    return settings


def _check_model_settings(settings: dict[str, Any]) -> None:
    from ..policies import check_policy_settings
    from ..policies.base import SAMPLING_KEYS, SamplingOptions

    def check() -> None:
        known = {k: v for k, v in settings.items() if k == "dropout"}
        check_policy_settings("--model", settings.get("max_len", DEFAULT_MAX_LEN), known)
        SamplingOptions(**{k: settings[k] for k in SAMPLING_KEYS if k in settings})

    with_option("--policy-set", check)


def default_max_len(directory: Path) -> int:
    """:data:`DEFAULT_MAX_LEN`, or half the model's positions when it has fewer than twice that (the other half
    for the prompt)."""
    import json

    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        positions = config.get("n_positions") or config.get("max_position_embeddings")
    except (OSError, ValueError, AttributeError, RecursionError):
        positions = None
    if isinstance(positions, int) and not isinstance(positions, bool) and positions >= 2:
        return min(DEFAULT_MAX_LEN, positions // 2)
    return DEFAULT_MAX_LEN


def load_model(directory: Path, settings: dict[str, Any]) -> Any:
    """The policy of ``directory``; a folder that does not load (damaged weights, a config transformers refuses,
    weights of another shape, a setting the model has not) is one line naming the folder."""
    from ..policies.hf import HFCausalLMPolicy
    from ..policies.hf_lora import MissingExtraError

    kwargs = dict(settings)
    max_len = kwargs.pop("max_len", None) or default_max_len(directory)
    try:
        return HFCausalLMPolicy.from_pretrained(directory, max_len=max_len, **kwargs)
    except MissingExtraError:
        raise
    except Exception as err:  # noqa: BLE001 — transformers, safetensors and torch raise many kinds
        lines = [line.strip() for line in str(err).strip().splitlines()]
        unsafe = next((line for line in lines if "Unsupported global" in line), None)
        reason = (f"its weights are a pickle that would run code, refused ({unsafe.split('. ')[0]})" if unsafe
                  else f"{type(err).__name__}: {lines[0] if lines else ''}")
        reason = re.sub(r"\x1b\[[0-9;]*m", "", reason)  # torch colours its warning; one plain line here
        given = ", ".join(f"{k}={v}" for k, v in settings.items())
        raise UsageError(f"--model {str(directory)!r} does not load"
                         f"{f' with --policy-set {given}' if given else ''}: {reason}") from None


def save_model(policy: Any, out: Path) -> Path:
    """``OUT/model``: the model and its tokenizer as transformers writes them (LoRA adapters merged in), written
    beside it first and moved into place, so that an interrupted write never leaves a half model there."""
    import shutil
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    final = out / "model"
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=out))
    try:
        policy.save_pretrained(staging)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=".model-old-", dir=out))
            final.rename(old / "model")
            staging.rename(final)
            shutil.rmtree(old)
        else:
            staging.rename(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return final


__all__ = ["DEFAULT_MAX_LEN", "MODEL_SETTINGS", "check_model_options", "load_model", "model_directory",
           "model_settings", "quiet_transformers", "save_model"]
