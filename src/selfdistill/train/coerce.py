"""Conversion of a config value to its field's declared type (shared by the config sections and the
typed ``contexts`` keys)."""

from __future__ import annotations

import types
import typing
from typing import Any

from .errors import ConfigError


def coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` (from YAML or ``key=value``) as the field type ``hint``: Literal choices, ``X | None``,
    bool, int, float, str, list, dict; ConfigError names ``key`` otherwise."""
    if typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not valid; choose one of {', '.join(map(str, choices))}")
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return coerce(value, args[0], key)
    bad = ConfigError(f"{key} must be of type {getattr(hint, '__name__', hint)}, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise bad
    if hint is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if hint is float:
        if isinstance(value, bool):
            raise bad
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad from None
    if hint is str:
        if isinstance(value, (dict, list)) or value is None:
            raise bad
        return str(value)
    if hint is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise bad
        return list(value)
    if hint is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    raise bad
