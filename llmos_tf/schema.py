"""Dataclass building and validation, shared by the run config and the model registry.

A config section is a dataclass; :func:`build` turns a plain mapping (read from
YAML, changed by ``--set`` overrides) into it, checking every key and value on
the way, with errors that name the dotted key and list the valid ones.

It lives below both :mod:`llmos_tf.config` (which builds the whole ``RunConfig``)
and :mod:`llmos_tf.models.registry` (which builds the ``model:`` section against
the chosen architecture's dataclass), so that neither has to import the other's
internals: the registry used to import ``config._build`` back from the module
that imports it, an import cycle.

Example::

    @dataclass
    class Opt:
        rate: float = 0.1

    build(Opt, {"rate": 1}, "training")        # -> Opt(rate=1.0)
    build(Opt, {"rat": 1}, "training")         # ConfigError: unknown config key 'training.rat' (did you mean 'rate'?) ...
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Mapping, Sequence

from llmos_tf.errors import ConfigError


def field_names(cls: type) -> list[str]:
    """The field names of a dataclass, in declaration order (the "valid keys" of errors)."""
    return [f.name for f in dataclasses.fields(cls)]


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'lstm_units'?)`` for the closest choice (difflib), or ``""`` when none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check (and gently convert) ``value`` against a dataclass field type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(annotation):
        return build(annotation, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """The dataclass ``cls`` from ``values``; ``where`` is the dotted section errors name ("" at the top)."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    valid = field_names(cls)
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in valid:
            raise ConfigError(f"unknown config key '{path}'{did_you_mean(key, valid)}; valid keys{' in ' + where if where else ''}: {', '.join(valid)}",
                              key=path)
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = build(hint, value or {}, path)
        else:
            kwargs[key] = coerce(value, hint, path)
    return cls(**kwargs)
