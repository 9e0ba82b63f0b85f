"""Name → object registries, extendable three ways: a decorator in the user's code, the entry-point
group of an installed package, and a ``module:attribute`` name (the CLI's ``--reward mymod:score``)."""

from __future__ import annotations

import contextvars
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class PluginError(ValueError):
    """A plug-in that cannot be loaded (``module:function`` not found, an entry point that fails to
    import) or that misbehaves (wrong shape, NaN, raising); the message names it."""


def plugin_source(obj: Any) -> str | None:
    """``module:qualname`` of a plug-in (an object whose class, or whose ``plugin_source`` attribute,
    names code outside seqrl), None for seqrl's own objects: what error messages name."""
    source = getattr(obj, "plugin_source", None)
    if isinstance(source, str):
        return source
    cls = type(obj)
    module = getattr(cls, "__module__", "") or ""
    if module == "seqrl" or module.startswith("seqrl."):
        return None
    return f"{module}:{cls.__qualname__}"


def object_source(obj: Any) -> str:
    """``module:qualname`` of a function or class (for a plug-in's messages)."""
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_object(spec: str, kind: str = "plug-in") -> Any:
    """The object that ``"package.module:attr.sub"`` names, importing the module from ``sys.path`` or,
    failing that, from the current directory; a :class:`PluginError` naming ``spec`` otherwise."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name.strip() or not attr.strip():
        raise PluginError(f"{kind} {spec!r}: expected module:function")
    try:
        module = _import_here_too(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise PluginError(f"{kind} {spec!r}: no module named {err.name!r} (searched sys.path and the "
                              f"current directory {os.getcwd()})") from None
        raise PluginError(f"{kind} {spec!r}: importing {module_name!r} raised "
                          f"{type(err).__name__}: {first_line(err)}") from err
    except Exception as err:  # the user's module failed while importing: say so in one line
        raise PluginError(f"{kind} {spec!r}: importing {module_name!r} raised "
                          f"{type(err).__name__}: {first_line(err)}") from err
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(f"{kind} {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _import_here_too(module_name: str) -> Any:
    """``import module_name``; a module that only the current directory holds is found too (the
    ``seqrl`` console script, unlike ``python -m``, does not put the current directory on sys.path)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        here = os.getcwd()
        top = module_name.split(".")[0]
        if err.name != top or here in sys.path or "" in sys.path:
            raise
        sys.path.append(here)  # appended: installed packages keep precedence over the directory's files
        importlib.invalidate_caches()
        return importlib.import_module(module_name)


def plugin_exit(err: SystemExit, what: str) -> str:
    """The message for a plug-in that called ``sys.exit``: a plug-in's exit is its failure, not the run's end."""
    return f"{what} called sys.exit({err.code!r}); a plug-in must return values or raise an exception"


_RANGES: dict[int, tuple[float, float]] = {}


def record_range(obj: Any, values: Any) -> None:
    """Remember the smallest and largest finite value a plug-in last returned, so that a loss or estimate
    that overflows later can name the plug-in and the values that made it (:func:`range_note`)."""
    import torch

    finite = values[torch.isfinite(values)] if values.numel() else values
    if finite.numel():
        _RANGES[id(obj)] = (float(finite.min()), float(finite.max()))


def range_note(obj: Any, label: str) -> str:
    """``"; reward 'x' (plug-in m:f) last returned values in [lo, hi]"`` when ``obj`` recorded a range, else ''."""
    seen = _RANGES.get(id(obj))
    if seen is None:
        return ""
    source = plugin_source(obj)
    origin = f" (plug-in {source})" if source is not None and source != getattr(obj, "name", None) else ""
    return f"; {label} {getattr(obj, 'name', type(obj).__name__)!r}{origin} last returned values in " \
           f"[{seen[0]:.4g}, {seen[1]:.4g}]"


def plugin_notes(algorithm: Any) -> str:
    """What an algorithm's plug-in reward or potential last returned (:func:`range_note`), for the message of a
    loss or an estimate that overflowed."""
    return "".join(range_note(obj, label) for label in ("reward", "potential")
                   if (obj := getattr(algorithm, label, None)) is not None)


def build_plugin(registry: Registry[Any], name: str, error: type[Exception], **kwargs: Any) -> Any:
    """``registry.get(name)(**kwargs)``: a factory outside seqrl that raises gets one ``error`` line naming it
    (``building reward 'x' (mymod:f) raised …``); seqrl's own factories raise their own errors."""
    factory = registry.get(name)
    try:
        return factory(**kwargs)
    except error:
        raise
    except Exception as err:
        source = object_source(factory)
        if source.startswith("seqrl."):
            raise
        raise error(f"building {registry.kind} {name!r} ({source}) raised {type(err).__name__}: "
                    f"{first_line(err)}") from err


def name_plugin(obj: Any, name: str, *, generic: str | None = None) -> None:
    """Give a plug-in without a name of its own (None, or the ``generic`` name of its base class) the
    registered one, so that messages name it."""
    if getattr(obj, "name", None) in (None, generic) and plugin_source(obj) is not None:
        try:
            obj.name = name
        except AttributeError:
            pass


_IMPORTS_ALLOWED: contextvars.ContextVar[bool] = contextvars.ContextVar("seqrl_plugin_imports", default=True)


@contextmanager
def names_only() -> Iterator[None]:
    """Within the block, registries resolve registered names (and installed entry points) only: a
    ``module:function`` name is an unknown name, never an import. For reading files a user is handed
    (``seqrl report DIR``): a name written in a file must not choose code to run."""
    token = _IMPORTS_ALLOWED.set(False)
    try:
        yield
    finally:
        _IMPORTS_ALLOWED.reset(token)


class UnknownNameError(KeyError):
    """A name that no registry entry has; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the sentence.
        return str(self.args[0])


class Registry(Generic[T]):
    """A case-sensitive mapping from names to objects (classes or factories).

    Three ways in: :meth:`register` (a decorator in the user's code); ``group``, the
    ``importlib.metadata`` entry-point group of installed packages, read lazily the first time the
    registry is queried and each entry imported only when asked for (e.g. ``[options.entry_points]
    seqrl.rewards = myreward = mypkg:MyReward``); and a name ``"module:attr"``, imported on first use
    and then kept under that name. ``adapt(name, obj)`` turns what a user registers (e.g. a plain
    scoring function) into what the registry holds (a factory); the decorator returns ``obj`` itself.
    """

    def __init__(self, kind: str, group: str | None = None, adapt: Callable[[str, Any], T] | None = None) -> None:
        self.kind = kind
        self.group = group
        self.adapt = adapt
        self._entries: dict[str, T] = {}
        self._given: dict[str, object] = {}  # what was registered, before adapt (re-registering it is a no-op)
        self._plugins: dict[str, EntryPoint] | None = None if group is not None else {}
        self._from_plugins: set[str] = set()

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False):
        """Register ``obj`` under ``name``; without ``obj``, return a decorator."""

        def add(target: Any) -> Any:
            if name in self._entries and not overwrite and self._given.get(name) is not target:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = self.adapt(name, target) if self.adapt is not None else target
            self._given[name] = target
            self._from_plugins.discard(name)
            return target

        return add(obj) if obj is not None else add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a test's temporary entry); unknown names are an error."""
        self.get(name)
        del self._entries[name]
        self._given.pop(name, None)

    def reload_plugins(self) -> None:
        """Forget the entry points read so far (and the entries loaded from them) and read them again
        on the next query: a package installed while the process runs (a test's) becomes visible."""
        for name in self._from_plugins:
            self._entries.pop(name, None)
            self._given.pop(name, None)
        self._from_plugins.clear()
        self._plugins = None if self.group is not None else {}

    def _entry_points(self) -> dict[str, EntryPoint]:
        if self._plugins is None:
            assert self.group is not None
            self._plugins = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._plugins

    def _load(self, name: str) -> bool:
        """Load ``name`` from an entry point or as ``module:attr``; False when neither names it."""
        ep = self._entry_points().get(name)
        if ep is not None:
            try:
                obj = ep.load()
            except Exception as err:  # a broken plug-in package: one line naming it, not a traceback
                raise PluginError(f"{self.kind} plug-in {name!r} (entry point {ep.value} in group {self.group}) "
                                  f"failed to load: {type(err).__name__}: {first_line(err)}") from err
            self._from_plugins.add(name)
        elif ":" in name and _IMPORTS_ALLOWED.get():
            obj = load_object(name, self.kind)
        else:
            return False
        self._entries[name] = self.adapt(name, obj) if self.adapt is not None else obj
        self._given[name] = obj
        return True

    def get(self, name: str) -> T:
        if name in self._entries or self._load(name):
            return self._entries[name]
        known = ", ".join(self.names()) or "(none)"
        raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known} (or module:function)")

    def names(self) -> list[str]:
        return sorted(set(self._entries) | set(self._entry_points()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._entry_points())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self.get(n)) for n in self.names()]


Factory = Callable[..., T]
