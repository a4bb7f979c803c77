"""Configuration and errors of the context renderer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from selfdistill.contexts.prompts import TRANSITIONS

ROLES = ("student", "teacher", "refonly", "base", "reprompt", "blank")
# role -> the role whose template options it must share. The Purified OPSD anchor P_0 ("base") is
# the frozen base on the student's exact context, so P_0 == pi_theta at step 0; the
# reference-only teacher differs from the teacher only by the missing problem, so Delta_it
# measures the problem and nothing else. A role that is not configured inherits; configured
# differently, the config is refused (a silent mismatch was issue 19 item 8).
INHERITS = {"base": "student", "refonly": "teacher"}
Role = Literal["student", "teacher", "refonly", "base", "reprompt", "blank"]


class ContextError(ValueError):
    """A row cannot be rendered for a role (missing field, bad response ids, ...)."""


class ContextLengthError(ContextError):
    """Prompt + response is longer than ``ContextConfig.max_length`` (never truncated)."""


class ThinkBoundaryError(ContextError):
    """``think_boundary="own"`` but a role's generation prompt differs from the student's."""


# Values of ContextConfig.think_boundary. "own_any_suffix" reproduces OPSD's current code, whose
# teacher is [its own template output with enable_thinking=teacher_thinking][student response]:
# with a thinking-off student and a thinking-on Qwen3 teacher, the teacher scores the response
# right after "<|im_start|>assistant\n", where it would open "<think>".
THINK_BOUNDARIES = ("student_prefix", "own", "own_any_suffix")


@dataclass(frozen=True)
class RoleOptions:
    """Chat-template options of one role.

    Attributes:
        enable_thinking: passed to the template as ``enable_thinking`` (Qwen3 style) unless None.
        system_prompt: a system message put first, or None for the template's default.
    """

    enable_thinking: bool | None = None
    system_prompt: str | None = None


@dataclass(frozen=True)
class ContextConfig:
    """How every role is rendered.

    Attributes:
        transition: OPSD transition text: "hardened" (default; the current OPSD instruction in
            our words, free of counted markers), "mild" (paper v1) or "hardened-v0" (our phrasing
            before issue 19, with the counted marker "check"; for old-vs-new comparisons).
        roles: per-role template options (RoleOptions or plain dicts with the same keys); roles
            not listed use ``RoleOptions()``, except "base", which uses the student's options,
            and "refonly", which uses the teacher's (``INHERITS``); setting either to something
            else raises ContextError.
        max_length: prompt + response tokens allowed. None: the tokenizer's ``model_max_length``
            when it is a real limit (< 10**7), else the renderer refuses to start.
        over_length: "error" (raise ContextLengthError) or "drop" (skip the row, report it).
        strip_think: remove ``<think>`` blocks from SDPO sibling solutions (c = s without think).
        think_boundary: "student_prefix" (every role ends its prompt with the student's exact
            generation-prompt tokens), "own" (each role keeps its template output; the
            generation-prompt tokens must equal the student's, else ThinkBoundaryError) or
            "own_any_suffix" (each role keeps its template output even when its generation
            prompt differs from the student's: OPSD's current code with a thinking-off student
            and a thinking-on teacher). Response ids are the same in every role under all three.
        blank_text: the user turn of the "blank" control role.
        chat_template: a jinja chat template that replaces the tokenizer's own, or None.
    """

    transition: Literal["hardened", "mild", "hardened-v0"] = "hardened"
    roles: dict[str, RoleOptions] = field(default_factory=dict)
    max_length: int | None = None
    over_length: Literal["error", "drop"] = "error"
    strip_think: bool = False
    think_boundary: Literal["student_prefix", "own", "own_any_suffix"] = "student_prefix"
    blank_text: str = ""
    chat_template: str | None = None

    def __post_init__(self) -> None:
        _check_choice("transition", self.transition, tuple(TRANSITIONS))
        _check_choice("over_length", self.over_length, ("error", "drop"))
        _check_choice("think_boundary", self.think_boundary, THINK_BOUNDARIES)
        roles = {}
        for role, options in self.roles.items():
            _check_choice("roles key", role, ROLES)
            roles[role] = _role_options(role, options)
        object.__setattr__(self, "roles", roles)  # dicts (e.g. from YAML) become RoleOptions
        for role, parent in INHERITS.items():
            if role in roles and roles[role] != self.options(parent):
                raise ContextError(
                    f"ContextConfig.roles[{role!r}]={roles[role]} differs from the {parent}'s "
                    f"options {self.options(parent)}: the {role!r} role must render exactly the "
                    f"{parent}'s context (" + (
                        "the anchor P_0 must equal the student's context at step 0"
                        if role == "base" else
                        "the reference-only teacher differs from the teacher only by the problem"
                    ) + f"). Fix: remove roles.{role} (it inherits roles.{parent}) or make it equal"
                )
        if self.max_length is not None and self.max_length <= 0:
            raise ContextError(f"ContextConfig.max_length must be positive, got {self.max_length}")

    def options(self, role: str) -> RoleOptions:
        """The template options of ``role``: its own when configured, else those of the role it
        inherits from (``INHERITS``: base <- student, refonly <- teacher), else defaults."""
        if role in self.roles:
            return self.roles[role]
        if role in INHERITS:
            return self.options(INHERITS[role])
        return RoleOptions()


def _role_options(role: str, options: object) -> RoleOptions:
    if isinstance(options, RoleOptions):
        return options
    if isinstance(options, dict):
        unknown = set(options) - {"enable_thinking", "system_prompt"}
        if unknown:
            raise ContextError(
                f"ContextConfig.roles[{role!r}] has unknown keys {sorted(unknown)}; "
                "allowed: enable_thinking, system_prompt"
            )
        return RoleOptions(**options)
    raise ContextError(
        f"ContextConfig.roles[{role!r}] must be RoleOptions or a dict, got {type(options).__name__}"
    )


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ContextError(f"ContextConfig.{name}={value!r} is not one of {', '.join(choices)}")
