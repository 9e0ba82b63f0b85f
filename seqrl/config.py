"""Settings given as text (``--set key=value``) or as Python values, checked against the annotation
of the field or argument they set: a string stays a string where a string is expected
(``--task-set motif=101``), a ``Literal`` accepts only its choices, and every error names the key."""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any


class SettingError(ValueError):
    """A setting whose name is unknown or whose value does not fit its annotation."""


def _options(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a union annotation (``int | None`` → (int, NoneType)), else (annotation,)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return (annotation,)


def describe(annotation: Any) -> str:
    parts = []
    for option in _options(annotation):
        if typing.get_origin(option) is typing.Literal:
            parts.append(" | ".join(repr(v) for v in typing.get_args(option)))
        elif option is type(None):
            parts.append("None")
        else:
            parts.append(getattr(option, "__name__", str(option)))
    return " | ".join(parts)


def check_value(key: str, value: Any, annotation: Any) -> Any:
    """``value`` if it fits ``annotation`` (an int is accepted, and converted, where a float is
    expected); else a :class:`SettingError` naming ``key``, the value and what was expected."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return value
    for option in _options(annotation):
        if option is Any:
            return value
        if option is type(None):
            if value is None:
                return None
            continue
        if typing.get_origin(option) is typing.Literal:
            if any(value == choice and type(value) is type(choice) for choice in typing.get_args(option)):
                return value
            continue
        origin = typing.get_origin(option) or option
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin in (str, bool) and type(value) is origin:
            return value
        if origin is tuple and isinstance(value, (list, tuple)):
            return tuple(value)
        if origin in (list, dict) and isinstance(value, origin):
            return value
        if isinstance(origin, type) and origin not in (int, float, str, bool, tuple, list, dict) and \
                isinstance(value, origin):
            return value
    raise SettingError(f"{key}: expected {describe(annotation)}, got {value!r}")


def parse_text(key: str, text: str, annotation: Any) -> Any:
    """The value ``text`` stands for, read as the annotation wants: a string field keeps the text as
    is; numbers, booleans (true/false), None (none/null) and lists (JSON) are parsed; a value that
    fits no alternative is a :class:`SettingError` naming ``key``."""
    options = _options(annotation)
    if annotation in (Any, inspect.Parameter.empty):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    candidates: list[Any] = []
    lowered = text.strip().lower()
    for option in options:
        if option is type(None) and lowered in ("none", "null"):
            return None
    for option in options:
        origin = typing.get_origin(option) or option
        if typing.get_origin(option) is typing.Literal:
            for choice in typing.get_args(option):
                if str(choice) == text:
                    return choice
            continue
        if origin is str:
            return text
        if origin is bool and lowered in ("true", "false"):
            return lowered == "true"
        if origin is int:
            try:
                candidates.append(int(text))
            except ValueError:
                pass
        if origin is float:
            try:
                candidates.append(float(text))
            except ValueError:
                pass
        if origin in (tuple, list, dict):
            try:
                candidates.append(json.loads(text))
            except json.JSONDecodeError:
                pass
    for value in candidates:
        try:
            return check_value(key, value, annotation)
        except SettingError:
            continue
    raise SettingError(f"{key}: expected {describe(annotation)}, got {text!r}")


def field_types(target: Any) -> dict[str, Any]:
    """Name → annotation of a dataclass's fields, or of a callable's keyword parameters."""
    if dataclasses.is_dataclass(target):
        try:
            hints = typing.get_type_hints(target)
        except Exception:  # annotations naming what the module cannot resolve: no checking
            hints = {}
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(target)}
    funcs: list[Callable[..., Any]] = [target]
    if inspect.isclass(target):  # a constructor passing **kwargs on to its parents' takes theirs too
        funcs = [vars(klass)["__init__"] for klass in target.__mro__
                 if "__init__" in vars(klass) and klass is not object]
    out: dict[str, Any] = {}
    for func in funcs:
        try:
            hints = typing.get_type_hints(func)
        except Exception:  # unresolvable annotations (a user's class): fall back to no checking
            hints = {}
        params = inspect.signature(func).parameters
        for n, p in params.items():
            if n not in ("self", "cls") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                out.setdefault(n, hints.get(n, Any))
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    return out


def parse_settings(items: Mapping[str, str], target: Any, owner: str) -> dict[str, Any]:
    """Parse ``{key: text}`` for ``target`` (a dataclass or a callable), naming ``owner`` in errors;
    unknown keys are an error listing the known ones."""
    return _each_setting(items, target, owner, parse_text)


def check_settings(values: Mapping[str, Any], target: Any, owner: str) -> dict[str, Any]:
    """Check Python values against ``target``'s annotations (dataclass fields or parameters)."""
    return _each_setting(values, target, owner, check_value)


def _each_setting(items: Mapping[str, Any], target: Any, owner: str,
                  read: Callable[[str, Any, Any], Any]) -> dict[str, Any]:
    known = field_types(target)
    out = {}
    for key, value in items.items():
        if key not in known:
            raise SettingError(f"{owner}: unknown setting {key!r}; known: {', '.join(sorted(known))}")
        out[key] = read(f"{owner} {key}", value, known[key])
    return out


def check_ranges(settings: Any, *, at_least_zero: tuple[str, ...] = (), fractions: tuple[str, ...] = ()) -> None:
    """Counts (int fields) must be ≥ 1 and rates (float fields) > 0, except the names in ``at_least_zero``
    (≥ 0) and ``fractions`` (in [0, 1]); None stays allowed where the annotation allows it."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if value is None or isinstance(value, (bool, str, tuple)):
            continue
        owner = type(settings).__name__
        if f.name in fractions:
            if not 0.0 <= value <= 1.0:
                raise SettingError(f"{owner}.{f.name} must be in [0, 1], got {value!r}")
        elif f.name in at_least_zero:
            if not value >= 0:
                raise SettingError(f"{owner}.{f.name} must be ≥ 0, got {value!r}")
        elif isinstance(value, int) and value < 1:
            raise SettingError(f"{owner}.{f.name} must be ≥ 1, got {value!r}")
        elif isinstance(value, float) and not value > 0:
            raise SettingError(f"{owner}.{f.name} must be > 0, got {value!r}")
