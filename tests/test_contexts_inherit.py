"""The anchor ("base") renders the student's exact context, and the reference-only teacher the
teacher's options (issue 19 item 8): P_0 == pi_theta at step 0, Delta_it differs only by the
problem. A role configured differently is refused with a clear error, never silently rendered."""

from __future__ import annotations

import pytest

from selfdistill.contexts import ContextConfig, ContextError, Renderer, RoleOptions
from selfdistill.types import Example

from test_contexts_alignment import QWEN_LIKE

EXAMPLE = Example(id="q1", problem="What is 2 + 3?", solution="2 + 3 = 5.", answer="5")
STUDENT = RoleOptions(enable_thinking=False, system_prompt="You are a careful solver.")
TEACHER = RoleOptions(enable_thinking=True, system_prompt="You grade solutions.")


@pytest.mark.parametrize("template", [None, QWEN_LIKE], ids=["smollm2", "qwen-like"])
def test_base_prompt_equals_student_prompt_with_student_options(smol_tokenizer, template):
    renderer = Renderer(smol_tokenizer, ContextConfig(
        max_length=4096, chat_template=template, roles={"student": STUDENT, "teacher": TEACHER}))
    student = renderer.prompt_ids("student", EXAMPLE)
    assert renderer.prompt_ids("base", EXAMPLE) == student
    assert "You are a careful solver." in renderer.prompt_text("base", EXAMPLE)
    batches = renderer.scoring_batches(["student", "base"], [EXAMPLE], [[5, 6, 7]])
    assert batches["base"].ids_B_L.tolist() == batches["student"].ids_B_L.tolist()


def test_refonly_inherits_the_teacher_options(smol_tokenizer):
    renderer = Renderer(smol_tokenizer, ContextConfig(
        max_length=4096, chat_template=QWEN_LIKE, roles={"student": STUDENT, "teacher": TEACHER}))
    teacher = renderer.prompt_text("teacher", EXAMPLE)
    refonly = renderer.prompt_text("refonly", EXAMPLE)
    assert "You grade solutions." in refonly
    # the reference-only prompt is the teacher prompt without the problem line, nothing else
    assert refonly == teacher.replace("Problem: What is 2 + 3?\n\n", "", 1)


def test_configured_equal_options_are_accepted():
    config = ContextConfig(roles={"student": STUDENT, "base": STUDENT, "teacher": TEACHER,
                                  "refonly": dict(enable_thinking=True, system_prompt="You grade solutions.")})
    assert config.options("base") == STUDENT and config.options("refonly") == TEACHER


@pytest.mark.parametrize("roles,match", [
    ({"student": STUDENT, "base": RoleOptions(enable_thinking=False)}, "roles\\['base'\\].*student.*step 0"),
    ({"base": {"system_prompt": "x"}}, "roles\\['base'\\].*remove roles.base"),
    ({"teacher": TEACHER, "refonly": RoleOptions()}, "roles\\['refonly'\\].*teacher.*only by the problem"),
])
def test_different_options_are_a_loud_error(roles, match):
    with pytest.raises(ContextError, match=match):
        ContextConfig(roles=roles)


def test_other_roles_do_not_inherit():
    config = ContextConfig(roles={"student": STUDENT, "teacher": TEACHER})
    for role in ("reprompt", "blank"):
        assert config.options(role) == RoleOptions()
