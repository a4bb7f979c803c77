"""Thinking-mode OPSD as in OPSD's current code: the student samples with thinking off, the teacher
scores with thinking on, each with its own chat-template output (``think_boundary="own_any_suffix"``).

OPSD's code builds the teacher's input as [teacher prompt rendered with
``enable_thinking=teacher_thinking``][student response ids]; these tests rebuild that sequence
directly with ``apply_chat_template`` and compare it with the renderer's ids.
"""

from __future__ import annotations

import pytest

from selfdistill.contexts import (
    ROLES,
    THINK_BOUNDARIES,
    ContextConfig,
    ContextError,
    Renderer,
    check_alignment,
)
from selfdistill.train.setup import context_config
from selfdistill.types import Example

from chat_templates import EMPTY_THINK, QWEN_LIKE  # noqa: E402  (tests/ is on the path)
EXAMPLES = [
    Example(id="a", problem="What is 2 + 3?", solution="2 + 3 = 5.", answer="5"),
    Example(id="b", problem="Solve x^2 = 4 for x > 0.", solution="x = 2 since 2 * 2 = 4.", answer="2"),
]
# the thinking-mode roles of OPSD's current code, as a recipe writes them
THINKING_ROLES = {"student": {"enable_thinking": False}, "teacher": {"enable_thinking": True}}


def _official_ids(tokenizer, renderer: Renderer, role: str, example: Example, thinking: bool,
                  response: list[int]) -> list[int]:
    """OPSD code's sequence: the role's own template output, then the response ids."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": renderer.user_text(role, example)}], tokenize=False,
        add_generation_prompt=True, chat_template=QWEN_LIKE, enable_thinking=thinking,
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"] + response


def _renderer(tokenizer, **options) -> Renderer:
    options = {"max_length": 4096, "chat_template": QWEN_LIKE, "roles": THINKING_ROLES, **options}
    return Renderer(tokenizer, context_config(options))


def test_own_any_suffix_is_a_choice() -> None:
    assert "own_any_suffix" in THINK_BOUNDARIES
    with pytest.raises(ContextError, match="think_boundary"):
        ContextConfig(think_boundary="teacher_thinks")


def test_thinking_mode_roles_render_as_opsd_code(smol_tokenizer) -> None:
    renderer = _renderer(smol_tokenizer, think_boundary="own_any_suffix")
    response = smol_tokenizer("The answer is \\boxed{5}.", add_special_tokens=False)["input_ids"]
    student = renderer.scoring_batch("student", EXAMPLES[:1], [response])
    teacher = renderer.scoring_batch("teacher", EXAMPLES[:1], [response])
    check_alignment([student, teacher])

    def real(batch):
        return batch.ids_B_L[0][batch.attention_mask_B_L[0].bool()].tolist()

    assert real(student) == _official_ids(smol_tokenizer, renderer, "student", EXAMPLES[0], False,
                                          response)
    assert real(teacher) == _official_ids(smol_tokenizer, renderer, "teacher", EXAMPLES[0], True,
                                          response)
    # the student generates after the empty think block; the teacher scores the same tokens right
    # after its own assistant header, where a thinking-on model would open <think>
    student_text = smol_tokenizer.decode(real(student), skip_special_tokens=False)
    teacher_text = smol_tokenizer.decode(real(teacher), skip_special_tokens=False)
    assert student_text.endswith("<|im_start|>assistant\n" + EMPTY_THINK + "The answer is \\boxed{5}.")
    assert teacher_text.endswith("<|im_end|>\n<|im_start|>assistant\nThe answer is \\boxed{5}.")
    assert EMPTY_THINK not in teacher_text
    # the rollout prompt is the student's own (thinking off)
    rollout = renderer.prompts("student", EXAMPLES[:1]).ids[0]
    assert smol_tokenizer.decode(rollout, skip_special_tokens=False).endswith(EMPTY_THINK)


def test_default_boundary_makes_the_teachers_thinking_option_a_no_op(smol_tokenizer) -> None:
    # Why the roles alone did not express OPSD's current code: under "student_prefix" every role
    # ends with the student's generation prompt, so a teacher with thinking on gets exactly the ids
    # of a teacher with thinking off on a template that uses enable_thinking only there.
    on = _renderer(smol_tokenizer)
    off = _renderer(smol_tokenizer, roles={"student": {"enable_thinking": False},
                                           "teacher": {"enable_thinking": False}})
    official = _official_ids(smol_tokenizer, on, "teacher", EXAMPLES[0], True, [])
    assert on.prompt_ids("teacher", EXAMPLES[0]) == off.prompt_ids("teacher", EXAMPLES[0])
    assert on.prompt_ids("teacher", EXAMPLES[0]) != official


def test_every_role_aligns_and_inherits_under_own_any_suffix(smol_tokenizer) -> None:
    renderer = _renderer(smol_tokenizer, think_boundary="own_any_suffix")
    responses = [smol_tokenizer(t, add_special_tokens=False)["input_ids"]
                 for t in ("It is \\boxed{5}.<|im_end|>", "\n\nx = 2")]
    batches = renderer.scoring_batches(list(ROLES), EXAMPLES, responses,
                                       siblings=["It is 5.", None], feedbacks=[None, "Wrong: 3."])
    check_alignment(batches)
    for b, example in enumerate(EXAMPLES):
        # base renders the student's context (thinking off), refonly the teacher's (thinking on)
        for role, thinking in (("base", False), ("refonly", True)):
            batch = batches[role]
            ids = batch.ids_B_L[b][batch.attention_mask_B_L[b].bool()].tolist()
            assert ids == _official_ids(smol_tokenizer, renderer, role, example, thinking,
                                        responses[b])


def test_own_any_suffix_changes_nothing_where_the_suffixes_agree(smol_tokenizer) -> None:
    # SmolLM2's template ignores enable_thinking: every boundary policy gives the same ids
    responses = [smol_tokenizer("It is 5.", add_special_tokens=False)["input_ids"]] * 2
    ids = {}
    for boundary in THINK_BOUNDARIES:
        renderer = Renderer(smol_tokenizer, context_config(
            {"max_length": 4096, "roles": THINKING_ROLES, "think_boundary": boundary}))
        batches = renderer.scoring_batches(["student", "teacher", "refonly"], EXAMPLES, responses)
        ids[boundary] = {role: batch.ids_B_L.tolist() for role, batch in batches.items()}
    assert ids["own_any_suffix"] == ids["student_prefix"] == ids["own"]
