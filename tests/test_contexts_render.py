"""Every role's rendered text (exact strings, plain SmolLM2 template), errors, SDPO contexts."""

from __future__ import annotations

import pytest
import torch

from selfdistill.contexts import (
    ROLES,
    ContextConfig,
    ContextError,
    ContextLengthError,
    Renderer,
    RoleOptions,
    choose_siblings,
    strip_think,
)
from selfdistill.types import Example

HEADER = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\n"
)
FOOTER = "<|im_end|>\n<|im_start|>assistant\n"
FINAL = "Please reason step by step, and put your final answer within \\boxed{}."
HARDENED = (
    "After reading the reference solution above, make sure you truly understand the reasoning "
    "behind each step, but do not copy or paraphrase it. Now derive the same final answer "
    "with your own independent reasoning: explore the approaches you find promising, and "
    "backtrack or reconsider whenever an approach does not work."
)
HARDENED_V0 = (  # before issue 19; contains the counted marker "check"
    "After reading the reference solution above, make sure you truly understand the reasoning "
    "behind each step, but do not copy or paraphrase it. Now solve the problem with your own "
    "independent reasoning: explore the approaches you find promising, check each step, and "
    "backtrack when something does not work."
)
MILD = (
    "After understanding the reference solution, please try to solve this problem using your "
    "own approach below."
)
REFERENCE = (
    "Here is a reference solution to this problem:\n=== Reference Solution Begin ===\n"
    "2 + 3 = 5, so the answer is 5.\n=== Reference Solution End ===\n\n"
)
EXAMPLE = Example(
    id="q7", problem="What is 2 + 3?", solution="2 + 3 = 5, so the answer is 5.", answer="5",
    origin="toy.jsonl line 7",
)


@pytest.fixture(scope="module")
def renderer(smol_tokenizer) -> Renderer:
    return Renderer(smol_tokenizer, ContextConfig(max_length=4096))


def test_student_and_base_text(renderer: Renderer) -> None:
    expected = f"{HEADER}Problem: What is 2 + 3?\n\n{FINAL}{FOOTER}"
    assert renderer.prompt_text("student", EXAMPLE) == expected
    assert renderer.prompt_text("base", EXAMPLE) == expected


def test_teacher_text_hardened_default(renderer: Renderer) -> None:
    expected = f"{HEADER}Problem: What is 2 + 3?\n\n{REFERENCE}{HARDENED}\n{FINAL}{FOOTER}"
    assert renderer.prompt_text("teacher", EXAMPLE) == expected


def test_teacher_text_mild_and_refonly(smol_tokenizer) -> None:
    mild = Renderer(smol_tokenizer, ContextConfig(max_length=4096, transition="mild"))
    assert mild.prompt_text("teacher", EXAMPLE) == (
        f"{HEADER}Problem: What is 2 + 3?\n\n{REFERENCE}{MILD}\n{FINAL}{FOOTER}"
    )
    assert mild.prompt_text("refonly", EXAMPLE) == f"{HEADER}{REFERENCE}{MILD}\n{FINAL}{FOOTER}"


def test_legacy_hardened_v0_text_kept_verbatim(smol_tokenizer) -> None:
    old = Renderer(smol_tokenizer, ContextConfig(max_length=4096, transition="hardened-v0"))
    assert old.prompt_text("teacher", EXAMPLE) == (
        f"{HEADER}Problem: What is 2 + 3?\n\n{REFERENCE}{HARDENED_V0}\n{FINAL}{FOOTER}"
    )
    assert old.prompt_text("refonly", EXAMPLE) == f"{HEADER}{REFERENCE}{HARDENED_V0}\n{FINAL}{FOOTER}"


def test_refonly_is_teacher_without_problem(renderer: Renderer) -> None:
    assert renderer.prompt_text("refonly", EXAMPLE) == f"{HEADER}{REFERENCE}{HARDENED}\n{FINAL}{FOOTER}"


def test_reprompt_with_sibling_ignores_feedback(renderer: Renderer) -> None:
    text = renderer.prompt_text("reprompt", EXAMPLE, sibling="It is \\boxed{5}.", feedback="bad")
    assert text == (
        f"{HEADER}Problem: What is 2 + 3?\n\n{FINAL}\nCorrect solution:\n\nIt is \\boxed{{5}}.\n"
        f"\n\nCorrectly solve the original question.\n{FOOTER}"
    )


def test_reprompt_with_feedback_only(renderer: Renderer) -> None:
    text = renderer.prompt_text("reprompt", EXAMPLE, feedback="Wrong answer: 6.")
    assert text == (
        f"{HEADER}Problem: What is 2 + 3?\n\n{FINAL}\nThe following is feedback from your "
        "unsuccessful earlier attempt:\n\nWrong answer: 6.\n"
        f"\n\nCorrectly solve the original question.\n{FOOTER}"
    )


def test_reprompt_without_context_raises(renderer: Renderer) -> None:
    with pytest.raises(ContextError, match="q7.*sibling or feedback"):
        renderer.prompt_ids("reprompt", EXAMPLE)


def test_blank_text_and_system_prompt(smol_tokenizer) -> None:
    config = ContextConfig(
        max_length=4096, roles={"blank": RoleOptions(system_prompt="Be brief.")}
    )
    text = Renderer(smol_tokenizer, config).prompt_text("blank", EXAMPLE)
    assert text == f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{FOOTER}"
    assert "2 + 3" not in text and "Reference" not in text


def test_strip_think_applies_to_siblings(smol_tokenizer) -> None:
    sibling = "<think>\nlet me try 6... no, 5\n</think>\n\nThe answer is \\boxed{5}."
    keep = Renderer(smol_tokenizer, ContextConfig(max_length=4096))
    strip = Renderer(smol_tokenizer, ContextConfig(max_length=4096, strip_think=True))
    assert "let me try" in keep.prompt_text("reprompt", EXAMPLE, sibling=sibling)
    stripped = strip.prompt_text("reprompt", EXAMPLE, sibling=sibling)
    assert "let me try" not in stripped and "<think>" not in stripped
    assert "Correct solution:\n\nThe answer is \\boxed{5}.\n" in stripped


def test_strip_think_forms() -> None:
    assert strip_think("<think>a</think>b<think>c</think> d") == "b d"
    assert strip_think("opened by the template</think>\nanswer") == "answer"
    assert strip_think("no thinking") == "no thinking"


def test_choose_siblings_first_success_of_same_group_never_itself() -> None:
    texts = ["a0", "a1", "a2", "b0", "b1", "c0"]
    rewards = [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    groups = ["a", "a", "a", "b", "b", "c"]
    assert choose_siblings(texts, rewards, groups) == ["a1", "a2", "a1", None, "b0", None]
    with pytest.raises(ValueError, match="same length"):
        choose_siblings(texts, rewards[:2], groups)


def test_sdpo_rows_without_context_are_flagged(renderer: Renderer, smol_tokenizer) -> None:
    response = smol_tokenizer("The answer is 5.", add_special_tokens=False)["input_ids"]
    batch = renderer.scoring_batch(
        "reprompt", [EXAMPLE] * 3, [response] * 3,
        siblings=["It is 5.", None, None], feedbacks=[None, "Wrong.", None],
    )
    assert batch.has_context_B.tolist() == [True, True, False]
    assert batch.loss_mask_B_T[2].sum() == 0
    assert batch.loss_mask_B_T[:2].sum() == 2 * len(response)
    student = renderer.prompt_ids("student", EXAMPLE)  # the flagged row is rendered as the student
    row = batch.ids_B_L[2, batch.response_start - len(student) : batch.response_start].tolist()
    assert row == student


def test_missing_solution_names_the_row(renderer: Renderer) -> None:
    bare = Example(id="q9", problem="1+1?", origin="data.jsonl line 9")
    for role in ("teacher", "refonly"):
        with pytest.raises(ContextError, match="q9.*data.jsonl line 9.*solution"):
            renderer.prompt_ids(role, bare)
    renderer.prompt_ids("student", bare)


def test_unknown_role_and_bad_config(renderer: Renderer) -> None:
    with pytest.raises(ContextError, match="unknown role"):
        renderer.prompt_ids("oracle", EXAMPLE)
    with pytest.raises(ContextError, match="transition"):
        ContextConfig(transition="gentle")
    with pytest.raises(ContextError, match="over_length"):
        ContextConfig(over_length="truncate")
    with pytest.raises(ContextError, match="roles key"):
        ContextConfig(roles={"teachr": RoleOptions()})
    with pytest.raises(ContextError, match="unknown keys.*thinking"):
        ContextConfig(roles={"teacher": {"thinking": True}})
    from_yaml = ContextConfig(roles={"teacher": {"enable_thinking": True}})
    assert from_yaml.options("teacher") == RoleOptions(enable_thinking=True)
    assert from_yaml.options("refonly") == RoleOptions(enable_thinking=True)  # inherits the teacher
    assert from_yaml.options("base") == RoleOptions()  # inherits the (default) student
    assert from_yaml.options("reprompt") == RoleOptions()


def test_max_length_required_when_tokenizer_has_no_real_limit(smol_tokenizer) -> None:
    assert smol_tokenizer.model_max_length > 10**7
    with pytest.raises(ContextError, match="max_length is required"):
        Renderer(smol_tokenizer, ContextConfig())


def test_over_length_error_message(smol_tokenizer) -> None:
    renderer = Renderer(smol_tokenizer, ContextConfig(max_length=170))
    short = renderer.prompt_ids("student", EXAMPLE)
    teacher = renderer.prompt_ids("teacher", EXAMPLE)
    assert len(short) < 100 < len(teacher) < 170
    response = [42] * (170 - len(teacher) + 1)
    with pytest.raises(ContextLengthError) as raised:
        renderer.scoring_batches(["student", "teacher"], [EXAMPLE], [response])
    message = str(raised.value)
    for needle in ("'teacher'", "'q7'", "toy.jsonl line 7", f"{len(teacher)} prompt",
                   f"{len(response)} response", "max_length=170", "never truncated",
                   "over_length='drop'"):
        assert needle in message
    long_problem = Example(id="q8", problem="x " * 200, origin="toy.jsonl line 8")
    with pytest.raises(ContextLengthError, match="q8"):
        renderer.prompt_ids("student", long_problem)


def test_over_length_drop_is_joint_and_reported(smol_tokenizer) -> None:
    renderer = Renderer(smol_tokenizer, ContextConfig(max_length=170, over_length="drop"))
    long = Example(id="long", problem="What is 2 + 3?", solution="step " * 40, origin="line 2")
    examples = [EXAMPLE, long, EXAMPLE]
    responses = [[10, 11], [12, 13, 14], [15]]
    batches = renderer.scoring_batches(["student", "teacher"], examples, responses)
    for batch in batches.values():
        assert batch.kept == [0, 2]
        assert [(d.index, d.example_id, d.role) for d in batch.dropped] == [(1, "long", "teacher")]
        assert "max_length=170" in batch.dropped[0].reason
        assert batch.response_ids_B_T.tolist() == [[10, 11], [15, renderer.pad_id]]
    alone = renderer.scoring_batch("student", examples, responses)
    assert alone.kept == [0, 1, 2] and alone.dropped == []


def test_all_rows_dropped_gives_empty_batch(smol_tokenizer) -> None:
    renderer = Renderer(smol_tokenizer, ContextConfig(max_length=10, over_length="drop"))
    batch = renderer.scoring_batch("student", [EXAMPLE], [[1, 2]])
    assert batch.ids_B_L.shape[0] == 0 and batch.kept == [] and len(batch.dropped) == 1


def test_bad_response_ids(renderer: Renderer) -> None:
    with pytest.raises(ContextError, match="response 1.*q7"):
        renderer.scoring_batch("student", [EXAMPLE, EXAMPLE], [[1], [10**9]])
    with pytest.raises(ContextError, match="not an integer"):
        renderer.scoring_batch("student", [EXAMPLE], [[1.0]])
    with pytest.raises(ContextError, match="is text"):
        renderer.scoring_batch("student", [EXAMPLE], ["5"])
    as_tensor = renderer.scoring_batch("student", [EXAMPLE], [torch.tensor([5, 6])])
    assert as_tensor.response_ids_B_T.tolist() == [[5, 6]]
    with pytest.raises(ContextError, match="2 examples but 1 responses"):
        renderer.scoring_batch("student", [EXAMPLE, EXAMPLE], [[1]])


def test_every_role_renders(renderer: Renderer) -> None:
    for role in ROLES:
        ids = renderer.prompt_ids(role, EXAMPLE, sibling="5")
        assert ids[-len(renderer.student_suffix()):] == renderer.student_suffix()


def test_no_chat_template(smol_tokenizer) -> None:
    class NoTemplate:
        chat_template = None

    with pytest.raises(ContextError, match="no chat template"):
        Renderer(NoTemplate(), ContextConfig(max_length=10))


def test_prompts_for_generation_reserve_room(smol_tokenizer) -> None:
    renderer = Renderer(smol_tokenizer, ContextConfig(max_length=100, over_length="drop"))
    short = renderer.prompt_ids("student", EXAMPLE)
    long = Example(id="long", problem="word " * 80, origin="line 3")
    batch = renderer.prompts("student", [EXAMPLE, long, EXAMPLE], reserve_tokens=100 - len(short))
    assert batch.ids == [short, short] and batch.kept == [0, 2]
    assert [(d.index, d.example_id) for d in batch.dropped] == [(1, "long")]
    assert renderer.prompts("student", [EXAMPLE], reserve_tokens=101 - len(short)).kept == []
    strict = Renderer(smol_tokenizer, ContextConfig(max_length=100))
    with pytest.raises(ContextLengthError, match="'long'"):
        strict.prompts("student", [EXAMPLE, long])
