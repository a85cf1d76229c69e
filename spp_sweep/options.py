"""Options of benchmark and model builders, resolved and checked before anything is built.

A builder's keyword parameters are its options; their defaults (or annotations, where the
default is None) say what type a value must have. Resolving fills in every default, so a run's
``result.json`` records each setting that shaped it (dropout and initialisation too, not only
what the user typed), and a value of the wrong type or a non-finite number is one line naming
the option, before any data is loaded.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import ConfigError

# Extra rules an option's type cannot say: name -> (check, what it must be).
Rule = tuple[Callable[[Any], bool], str]


def resolve_options(builder: Callable[..., Any], given: Mapping[str, Any], what: str,
                    skip: Iterable[str] = (), rules: Mapping[str, Rule] | None = None) -> dict[str, Any]:
    """``given`` over the defaults of ``builder``'s keyword parameters (except ``skip``), each checked."""
    parameters = {n: p for n, p in inspect.signature(builder).parameters.items() if n not in set(skip)}
    unknown = sorted(set(given) - set(parameters))
    if unknown:
        raise ConfigError(f"{what} has no option {', '.join(map(repr, unknown))}; valid options: "
                          f"{', '.join(parameters) or 'none'}")
    resolved: dict[str, Any] = {}
    for name, parameter in parameters.items():
        if name in given:
            value = check_value(what, name, given[name], parameter)
            rule = (rules or {}).get(name)
            if rule is not None and value is not None and not rule[0](value):
                raise ConfigError(f"{what} option {name}={given[name]!r} is invalid; it must be {rule[1]}")
            resolved[name] = value
        elif parameter.default is not inspect.Parameter.empty:
            resolved[name] = parameter.default
        elif parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            raise ConfigError(f"{what} needs the option {name} (e.g. --benchmark-option {name}=...; in a study, "
                              f"benchmark_options: {{{name}: ...}})")
    return resolved


def check_value(what: str, name: str, value: Any, parameter: inspect.Parameter) -> Any:
    """``value`` as the type the parameter's default (or annotation) asks for; ConfigError if not."""
    kind = _kind(parameter)
    if value is None:
        if parameter.default is None:
            return None
        raise ConfigError(f"{what} option {name} needs a value")
    problem = None
    if kind is bool:
        problem = None if isinstance(value, bool) else "true or false"
    elif kind is int:
        problem = None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problem = "a number"
        elif not math.isfinite(value):
            problem = "a finite number"
        else:
            value = float(value)
    elif kind is str:
        problem = None if isinstance(value, str) else "a string"
    elif kind is tuple:
        items = value if isinstance(value, (list, tuple)) else None
        if items is None or any(isinstance(v, bool) or not isinstance(v, int) for v in items):
            problem = "a list of whole numbers, e.g. [512, 256]"
        else:
            value = tuple(items)
    elif isinstance(value, float) and not math.isfinite(value):
        problem = "a finite number"
    if problem is not None:
        raise ConfigError(f"{what} option {name}={value!r} is invalid; it must be {problem}")
    return value


def _kind(parameter: inspect.Parameter) -> type | None:
    """The one type a parameter takes (from its annotation, else its default); None where it
    takes several (``str | Sequence[str]``) or says nothing: then only finiteness is checked."""
    annotation = parameter.annotation
    if annotation is not inspect.Parameter.empty:
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
        names = [part.strip() for part in text.split("|") if part.strip() != "None"]
        if len(names) != 1:
            return None
        for prefix, kind in (("bool", bool), ("int", int), ("float", float), ("str", str), ("Sequence", tuple),
                             ("tuple", tuple)):
            if names[0].startswith(prefix):
                return kind
        return None
    default = parameter.default
    if isinstance(default, (list, tuple)):
        return tuple
    return type(default) if type(default) in (bool, int, float, str) else None
