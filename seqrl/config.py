"""Settings given as text (``--set key=value``) or as Python values, checked against the annotation
of the field or argument they set: a string stays a string where a string is expected
(``--task-set motif=101``), a ``Literal`` accepts only its choices, and every error names the key."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any


class SettingError(ValueError):
    """A setting whose name is unknown or whose value does not fit its annotation; ``key`` names it."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


MAX_INT = 2**63 - 1
"""The largest integer a setting may hold (torch's int64): seeds and sizes beyond it are refused, not wrapped."""


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


def _finite_float(key: str, value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise SettingError(f"{key}: expected a finite number, got {value!r}", key)
    return number


def _bounded_int(key: str, value: int) -> int:
    if not -MAX_INT <= value <= MAX_INT:
        raise SettingError(f"{key}: {value} is beyond the integer range of ±(2**63 - 1)", key)
    return value


_NO_MATCH = object()
"""What :func:`_fit_option` returns for a value that the option does not take."""


def _fit_option(key: str, value: Any, option: Any) -> Any:
    """``value`` as ``option`` (one alternative of an annotation) takes it, or :data:`_NO_MATCH`."""
    if option is Any:
        return value
    if option is type(None):
        return None if value is None else _NO_MATCH
    if typing.get_origin(option) is typing.Literal:
        matches = any(value == choice and type(value) is type(choice) for choice in typing.get_args(option))
        return value if matches else _NO_MATCH
    origin = typing.get_origin(option) or option
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is float and is_number:
        if isinstance(value, int):
            _bounded_int(key, value)
        return _finite_float(key, value)
    if origin is int and is_number and isinstance(value, int):
        return _bounded_int(key, value)
    if origin in (str, bool) and type(value) is origin:
        return value
    if origin is tuple and isinstance(value, (list, tuple)):
        return _check_items(key, tuple(value), typing.get_args(option))
    if origin in (list, dict) and isinstance(value, origin):
        return value
    plain = (int, float, str, bool, tuple, list, dict)
    if isinstance(origin, type) and origin not in plain and isinstance(value, origin):
        return value
    return _NO_MATCH


def check_value(key: str, value: Any, annotation: Any) -> Any:
    """``value`` if it fits ``annotation`` (an int is accepted, and converted, where a float is
    expected); else a :class:`SettingError` naming ``key``, the value and what was expected.

    Numbers are checked before anything uses them: a float must be finite (``nan``, ``inf`` and ``1e400`` are
    refused), an int must fit in 64 bits, a bool is not an int, a float is not an int; the items of a
    ``tuple[...]`` are checked against their annotations."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return value
    for option in _options(annotation):
        fitted = _fit_option(key, value, option)
        if fitted is not _NO_MATCH:
            return fitted
    raise SettingError(f"{key}: expected {describe(annotation)}, got {value!r}", key)


def _check_items(key: str, items: tuple[Any, ...], args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The items of a ``tuple[X, ...]`` or ``tuple[X, Y, Z]`` checked against their annotations."""
    if not args:
        return items
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(check_value(f"{key}[{i}]", item, args[0]) for i, item in enumerate(items))
    if len(args) != len(items):
        raise SettingError(f"{key}: expected {len(args)} items, got {len(items)}: {items!r}", key)
    return tuple(check_value(f"{key}[{i}]", item, arg) for i, (item, arg) in enumerate(zip(items, args)))


def _read_as(text: str, option: Any) -> list[Any]:
    """The values ``text`` may stand for under one alternative of an annotation (none, one, or, for a Literal,
    the matching choice)."""
    origin = typing.get_origin(option) or option
    lowered = text.strip().lower()
    if typing.get_origin(option) is typing.Literal:
        return [choice for choice in typing.get_args(option) if str(choice) == text][:1]
    if option is type(None):
        return [None] if lowered in ("none", "null") else []
    if origin is str:
        return [text]
    if origin is bool:
        return [lowered == "true"] if lowered in ("true", "false") else []
    readers: dict[Any, Callable[[str], Any]] = {int: int, float: float, tuple: json.loads, list: json.loads,
                                                dict: json.loads}
    reader = readers.get(origin)
    if reader is None:
        return []
    try:
        return [reader(text)]
    except (ValueError, RecursionError):  # json.JSONDecodeError is a ValueError; nesting past the stack limit
        return []


def parse_text(key: str, text: str, annotation: Any) -> Any:
    """The value ``text`` stands for, read as the annotation wants: a string field keeps the text as
    is; numbers, booleans (true/false), None (none/null) and lists (JSON) are parsed; a value that
    fits no alternative is a :class:`SettingError` naming ``key`` (a number out of range says so)."""
    if annotation in (Any, inspect.Parameter.empty):
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return text
    options = sorted(_options(annotation), key=lambda o: o is not type(None))  # "none" means None first
    candidates = [value for option in options for value in _read_as(text, option)]
    out_of_range = False
    for value in candidates:
        if value is None or isinstance(value, str) or typing.get_origin(annotation) is typing.Literal:
            return value
        try:
            return check_value(key, value, annotation)
        except SettingError as err:
            out_of_range |= isinstance(value, (int, float)) and ("finite" in str(err) or "integer range" in str(err))
    if out_of_range:
        raise SettingError(f"{key}: expected a finite number within range, got {text!r}", key)
    raise SettingError(f"{key}: expected {describe(annotation)}, got {text!r}", key)


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
            raise SettingError(f"{owner}: unknown setting {key!r}; known: {', '.join(sorted(known))}", key)
        out[key] = read(f"{owner} {key}", value, known[key])
    return out


_HINTS: dict[type, dict[str, Any]] = {}


def validate_fields(settings: Any, owner: str | None = None) -> None:
    """Check every field of a dataclass instance against its annotation (:func:`check_value`: types, finite
    floats, 64-bit ints, no bool for an int); a :class:`SettingError` names ``owner.field``. Values that
    :func:`check_value` would convert (an int for a float) are converted in place."""
    cls = type(settings)
    if cls not in _HINTS:
        _HINTS[cls] = field_types(cls)
    owner = owner or cls.__qualname__
    for name, annotation in _HINTS[cls].items():
        value = getattr(settings, name)
        checked = check_value(f"{owner}.{name}", value, annotation)
        if checked is not value and type(checked) is not type(value):
            object.__setattr__(settings, name, checked)  # frozen dataclasses too: the checked form is the value


def check_ranges(settings: Any, *, at_least_zero: tuple[str, ...] = (), fractions: tuple[str, ...] = (),
                 limits: Mapping[str, int] | None = None) -> None:
    """Types first (:func:`validate_fields`); then counts (int fields) must be ≥ 1 and rates (float fields) > 0,
    except the names in ``at_least_zero`` (≥ 0) and ``fractions`` (in [0, 1]); ``limits`` caps fields
    (what they would allocate); None stays allowed where the annotation allows it."""
    validate_fields(settings)
    owner = type(settings).__name__
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if value is None or isinstance(value, (bool, str, tuple)):
            continue
        if f.name in fractions:
            if not 0.0 <= value <= 1.0:
                raise SettingError(f"{owner}.{f.name} must be in [0, 1], got {value!r}", f.name)
        elif f.name in at_least_zero:
            if not value >= 0:
                raise SettingError(f"{owner}.{f.name} must be ≥ 0, got {value!r}", f.name)
        elif isinstance(value, int) and value < 1:
            raise SettingError(f"{owner}.{f.name} must be ≥ 1, got {value!r}", f.name)
        elif isinstance(value, float) and not value > 0:
            raise SettingError(f"{owner}.{f.name} must be > 0, got {value!r}", f.name)
        limit = (limits or {}).get(f.name)
        if limit is not None and isinstance(value, int) and value > limit:
            raise SettingError(f"{owner}.{f.name} = {value:,} exceeds its limit of {limit:,}", f.name)


def check_size(what: str, value: int, limit: int, *, unit: str = "", bytes_each: int | None = None) -> None:
    """Refuse ``value`` above ``limit`` before anything is allocated, with the figure (and the memory it would
    take when ``bytes_each`` says what one unit costs)."""
    if value > limit:
        memory = f" (≈ {value * bytes_each / 2**30:,.1f} GiB)" if bytes_each else ""
        raise SizeLimitError(f"{what} = {value:,}{unit} exceeds the limit of {limit:,}{unit}{memory}")


class SizeLimitError(SettingError):
    """A size (data, vocabulary, enumerated space) above its stated limit, refused before allocation."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Base of seqrl's settings dataclasses (algorithm configs): on construction every field is checked
    against its annotation (:func:`validate_fields`), so a bad number fails where it is given, naming the
    field, before anything is computed. A subclass with its own ``__post_init__`` calls this one first."""

    def __post_init__(self) -> None:
        validate_fields(self)


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass's fields (the string literal right after each field, as seqrl
    documents settings), over its base classes too; fields without one are left out."""
    import ast
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                    isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and \
                    isinstance(after.value.value, str):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs
