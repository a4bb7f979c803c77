"""The ``contexts`` section of a training config, typed by the renderer's own options.

``contexts.<option>`` keys are the fields of ``selfdistill.contexts.ContextConfig`` and
``contexts.roles.<role>.<option>`` those of ``RoleOptions``: a value is checked and converted to
the field's type when it is set (YAML or ``key=value``), so a wrong name or value fails at once
with the valid choices, and ``contexts.max_length=4096`` works on the command line like any key.
The section is kept as the plain mapping that ``train.setup.context_config`` turns into a
``ContextConfig``.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

from .coerce import coerce
from .errors import ConfigError


def _fields(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def keys() -> list[str]:
    """Every ``contexts.*`` key (roles as ``contexts.roles.<role>.<option>``)."""
    from selfdistill.contexts import ContextConfig, RoleOptions

    out = [f"contexts.{name}" for name in _fields(ContextConfig) if name != "roles"]
    return out + [f"contexts.roles.<role>.{name}" for name in _fields(RoleOptions)]


def describe() -> list[str]:
    """``--list-keys`` lines of the section: each option with its default and type."""
    from selfdistill.contexts import ROLES, ContextConfig, RoleOptions

    lines = ["contexts:  # the renderer's options (docs/contexts.md)"]
    for f in dataclasses.fields(ContextConfig):
        if f.name != "roles":
            lines.append(f"  {f.name}: {f.default}  # {_type_name(_fields(ContextConfig)[f.name])}")
    lines.append(f"  roles:  # per role ({'|'.join(ROLES)}): template options")
    for f in dataclasses.fields(RoleOptions):
        lines.append(f"    <role>.{f.name}: {f.default}  # {_type_name(_fields(RoleOptions)[f.name])}")
    return lines


def set_option(options: dict, parts: list[str], value: Any) -> None:
    """Set ``contexts.<parts>`` in ``options`` (a mapping) to ``value`` converted to its type."""
    from selfdistill.contexts import ROLES, ContextConfig, RoleOptions

    key = "contexts." + ".".join(parts)
    hints = _fields(ContextConfig)
    name = parts[0]
    if name not in hints:
        raise ConfigError(_unknown(key, list(hints)))
    if name != "roles":
        if len(parts) != 1:
            raise ConfigError(f"{key}: contexts.{name} has no sub-keys")
        options[name] = coerce(value, hints[name], key)
        return
    if len(parts) == 1:  # contexts.roles: {teacher: {enable_thinking: true}}
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must map a role to its options, e.g. {{teacher: {{enable_thinking: true}}}}")
        for role, opts in value.items():
            if not isinstance(opts, dict):
                raise ConfigError(f"{key} must map a role to its options, e.g. {{teacher: {{enable_thinking: "
                                  f"true}}}}; {key}.{role} is {opts!r}")
            for opt, v in opts.items():
                set_option(options, ["roles", str(role), str(opt)], v)
        return
    role = parts[1]
    if role not in ROLES:
        raise ConfigError(f"{key}: unknown role {role!r}; roles are {', '.join(ROLES)}")
    role_hints = _fields(RoleOptions)
    if len(parts) == 2:
        set_option(options, ["roles"], {role: value})
        return
    if len(parts) != 3 or parts[2] not in role_hints:
        raise ConfigError(_unknown(key, [f"contexts.roles.{role}.{o}" for o in role_hints]))
    roles = options.setdefault("roles", {})
    roles.setdefault(role, {})[parts[2]] = coerce(value, role_hints[parts[2]], key)


def _unknown(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key.split(".")[-1], [v.split(".")[-1] for v in valid], n=2)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    owner = "RoleOptions" if ".roles." in key else "ContextConfig"
    return f"{key} is not a {owner} option; {hint}valid: {', '.join(valid)}"


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + "|".join(map(str, typing.get_args(hint)))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
