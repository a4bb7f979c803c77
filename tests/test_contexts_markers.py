"""No role's prompt contains a counted epistemic marker (issue 19 item 1).

Every role is rendered for every transition, both reprompt forms (sibling, feedback), two chat
templates, both thinking settings and with a system prompt, and the decoded prompt is scanned
with the analysis counter itself (``count_epistemic_markers``, both modes), so the marker list
cannot drift from what the analyses count. The example's own fields are marker-free, so any hit
comes from our text. The legacy transition kept for comparison must still be caught.
"""

from __future__ import annotations

import pytest

from selfdistill.analysis.markers import MODES, count_epistemic_markers
from selfdistill.contexts import ROLES, ContextConfig, Renderer, RoleOptions, prompts
from selfdistill.contexts.prompts import LEGACY_TRANSITIONS, TRANSITIONS
from selfdistill.types import Example

from test_contexts_alignment import QWEN_LIKE

EXAMPLE = Example(id="q1", problem="What is 2 + 3?", solution="2 + 3 = 5, so the answer is 5.", answer="5")
SIBLING = "2 + 3 = 5. The answer is \\boxed{5}."
FEEDBACK = "Your answer 6 was wrong."
CURRENT = [name for name in TRANSITIONS if name not in LEGACY_TRANSITIONS]


def markers(text: str) -> dict[str, dict[str, int]]:
    """{mode: {marker: count}} of the nonzero counts in ``text``."""
    out = {}
    for mode in MODES:
        counts = count_epistemic_markers(text, mode=mode)
        hits = {m: c for m, c in counts.items() if m != "total" and c}
        if hits:
            out[mode] = hits
    return out


def rendered_prompts(renderer: Renderer) -> dict[str, str]:
    """Every role's decoded prompt (reprompt in both of its forms)."""
    out = {}
    for role in ROLES:
        if role == "reprompt":
            out["reprompt+sibling"] = renderer.prompt_text(role, EXAMPLE, sibling=SIBLING)
            out["reprompt+feedback"] = renderer.prompt_text(role, EXAMPLE, feedback=FEEDBACK)
        elif role == "blank" and not renderer.config.blank_text:
            out[role] = renderer.tokenizer.decode(renderer._ids(role, ""), skip_special_tokens=False)
        else:
            out[role] = renderer.prompt_text(role, EXAMPLE)
    return out


def test_example_fields_are_marker_free():
    for text in (EXAMPLE.problem, EXAMPLE.solution, SIBLING, FEEDBACK):
        assert not markers(text), text


@pytest.mark.parametrize("transition", CURRENT)
@pytest.mark.parametrize("template", [None, QWEN_LIKE], ids=["smollm2", "qwen-like"])
@pytest.mark.parametrize("thinking", [None, False, True])
@pytest.mark.parametrize("strip_think", [False, True])
def test_every_role_prompt_is_marker_free(smol_tokenizer, transition, template, thinking, strip_think):
    roles = {"student": RoleOptions(enable_thinking=thinking, system_prompt="Answer the question."),
             "teacher": RoleOptions(enable_thinking=True if thinking is not None else None)}
    renderer = Renderer(smol_tokenizer, ContextConfig(
        max_length=4096, transition=transition, roles=roles, chat_template=template,
        strip_think=strip_think))
    found = {name: hits for name, text in rendered_prompts(renderer).items() if (hits := markers(text))}
    assert not found, f"transition {transition!r}: counted markers in prompts: {found}"


def test_every_prompt_string_in_the_module_is_marker_free():
    """Also the raw strings (a text a future role uses before any test renders it)."""
    strings = {name: value for name, value in vars(prompts).items()
               if isinstance(value, str) and not name.startswith("__")}
    strings.update({f"TRANSITIONS[{k!r}]": v for k, v in TRANSITIONS.items() if k not in LEGACY_TRANSITIONS})
    assert "FINAL_INSTRUCTION" in strings and "SDPO_REPROMPT" in strings
    found = {name: hits for name, text in strings.items() if (hits := markers(text))}
    assert not found, found


@pytest.mark.parametrize("legacy", LEGACY_TRANSITIONS)
def test_legacy_transition_is_caught_by_the_scan(smol_tokenizer, legacy):
    """The scan can fail: the pre-issue-19 text (kept for comparisons) tells the teacher to
    'check each step', and the same scan finds it in the teacher and reference-only prompts."""
    renderer = Renderer(smol_tokenizer, ContextConfig(max_length=4096, transition=legacy))
    got = rendered_prompts(renderer)
    for role in ("teacher", "refonly"):
        assert markers(got[role]) == {"word": {"check": 1}, "paper": {"check": 1}}
    assert not markers(got["student"])


def test_default_transition_is_marker_free_and_keeps_the_official_meaning():
    assert ContextConfig().transition == "hardened"
    text = TRANSITIONS["hardened"]
    for phrase in ("understand the reasoning behind each step", "do not copy or paraphrase",
                   "same final answer", "own independent reasoning", "explore", "backtrack",
                   "reconsider"):
        assert phrase in text, phrase
