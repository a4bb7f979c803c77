"""Response ids line up in every role: both templates, both thinking settings, fuzzed text."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfdistill.contexts import (
    ROLES,
    AlignmentError,
    ContextConfig,
    Renderer,
    RoleOptions,
    ThinkBoundaryError,
    check_alignment,
)
from selfdistill.types import Example

from chat_templates import EMPTY_THINK, QWEN_LIKE  # noqa: E402  (tests/ is on the path)
EXAMPLES = [
    Example(id="a", problem="What is 2 + 3?", solution="2 + 3 = 5.", answer="5"),
    Example(id="b", problem="Solve x^2 = 4 for x > 0, then add a long tail of words here.",
            solution="x = 2 because 2 * 2 = 4.", answer="2"),
]
SIBLINGS = ["<think>hmm</think>It is \\boxed{5}.", None]
FEEDBACKS = [None, "Your answer 3 was wrong."]


def _config(template: str | None, student: bool, teacher: bool, boundary: str) -> ContextConfig:
    # "base" is not set: it inherits the student's options (the anchor renders the student's
    # context; a different setting is refused, test_contexts_inherit.py)
    roles = {role: RoleOptions(enable_thinking=teacher) for role in ROLES if role not in ("student", "base")}
    roles["student"] = RoleOptions(enable_thinking=student)
    return ContextConfig(max_length=4096, roles=roles, chat_template=template,
                         think_boundary=boundary)


def _responses(tokenizer) -> list[list[int]]:
    texts = ["The answer is \\boxed{5}.<|im_end|>", "\n\nx = 2"]
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


@pytest.mark.parametrize("template", [None, QWEN_LIKE], ids=["smollm2", "qwen-like"])
@pytest.mark.parametrize("student_thinking", [False, True])
@pytest.mark.parametrize("teacher_thinking", [False, True])
def test_response_ids_identical_in_every_role(
    smol_tokenizer, template, student_thinking, teacher_thinking
) -> None:
    renderer = Renderer(
        smol_tokenizer, _config(template, student_thinking, teacher_thinking, "student_prefix")
    )
    responses = _responses(smol_tokenizer)
    batches = renderer.scoring_batches(
        list(ROLES), EXAMPLES, responses, siblings=SIBLINGS, feedbacks=FEEDBACKS
    )
    check_alignment(batches)
    for role, batch in batches.items():
        for b, response in enumerate(responses):
            start = batch.response_start
            assert batch.response_ids_B_T[b, : len(response)].tolist() == response
            assert batch.ids_B_L[b, start : start + len(response)].tolist() == response
            prompt = renderer.prompt_ids(role, EXAMPLES[b], sibling=SIBLINGS[b],
                                         feedback=FEEDBACKS[b])
            # the row is exactly prompt ids + response ids (no re-tokenized seam), left-padded
            real = batch.ids_B_L[b][batch.attention_mask_B_L[b].bool()].tolist()
            assert real == prompt + response
            assert batch.attention_mask_B_L[b, : start - len(prompt)].sum() == 0


@pytest.mark.parametrize("student_thinking", [False, True])
def test_teacher_ids_show_the_students_boundary(smol_tokenizer, student_thinking) -> None:
    renderer = Renderer(
        smol_tokenizer, _config(QWEN_LIKE, student_thinking, not student_thinking, "student_prefix")
    )
    response = smol_tokenizer("The answer", add_special_tokens=False)["input_ids"]
    for role in ("teacher", "student", "refonly"):
        batch = renderer.scoring_batch(role, EXAMPLES[:1], [response])
        text = smol_tokenizer.decode(batch.ids_B_L[0].tolist(), skip_special_tokens=False)
        boundary = "<|im_start|>assistant\n" + ("" if student_thinking else EMPTY_THINK)
        assert text.endswith("<|im_end|>\n" + boundary + "The answer")
    # the teacher's own template (thinking the other way) would have put a different boundary
    own = smol_tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True,
        chat_template=QWEN_LIKE, enable_thinking=not student_thinking,
    )
    assert own.endswith(EMPTY_THINK) == student_thinking


def test_own_boundary_requires_matching_generation_prompts(smol_tokenizer) -> None:
    mismatch = Renderer(smol_tokenizer, _config(QWEN_LIKE, False, True, "own"))
    with pytest.raises(ThinkBoundaryError, match="'teacher'.*enable_thinking"):
        mismatch.prompt_ids("teacher", EXAMPLES[0])
    same = Renderer(smol_tokenizer, _config(QWEN_LIKE, True, True, "own"))
    text = smol_tokenizer.apply_chat_template(
        [{"role": "user", "content": same.user_text("teacher", EXAMPLES[0])}], tokenize=False,
        add_generation_prompt=True, chat_template=QWEN_LIKE, enable_thinking=True,
    )
    expected = smol_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert same.prompt_ids("teacher", EXAMPLES[0]) == expected
    # the plain SmolLM2 template ignores enable_thinking: "own" is always consistent there
    plain = Renderer(smol_tokenizer, _config(None, False, True, "own"))
    batches = plain.scoring_batches(list(ROLES), EXAMPLES, _responses(smol_tokenizer),
                                    siblings=SIBLINGS, feedbacks=FEEDBACKS)
    check_alignment(batches)


def test_check_alignment_detects_differences(smol_tokenizer) -> None:
    renderer = Renderer(smol_tokenizer, ContextConfig(max_length=4096))
    a = renderer.scoring_batch("student", EXAMPLES, [[5, 6], [7]])
    b = renderer.scoring_batch("teacher", EXAMPLES, [[5, 6], [8]])
    c = renderer.scoring_batch("teacher", EXAMPLES, [[5, 6], [7, 7]])
    d = renderer.scoring_batch("teacher", EXAMPLES[:1], [[5, 6]])
    check_alignment([a, renderer.scoring_batch("teacher", EXAMPLES, [[5, 6], [7]])])
    with pytest.raises(AlignmentError, match="response ids in batch row 1"):
        check_alignment([a, b])
    with pytest.raises(AlignmentError, match="response lengths"):
        check_alignment({"student": a, "teacher": c})
    with pytest.raises(AlignmentError, match="keep different rows"):
        check_alignment([a, d])


def test_left_padding_matches_unpadded_forward(smol_tokenizer) -> None:
    """Logits at [response_start-1, response_start-1+T) of the padded batch equal the logits of
    each row run alone: padding, attention mask and position ids are consistent."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
    model = LlamaForCausalLM(config).eval()
    renderer = Renderer(smol_tokenizer, ContextConfig(max_length=4096))
    responses = [[100, 200, 300], [400]]
    batch = renderer.scoring_batch("teacher", EXAMPLES, responses)
    with torch.no_grad():
        logits_B_L_V = model(input_ids=batch.ids_B_L, attention_mask=batch.attention_mask_B_L,
                             position_ids=batch.position_ids_B_L).logits
        for b, response in enumerate(responses):
            alone = renderer.prompt_ids("teacher", EXAMPLES[b]) + response
            ref_L_V = model(input_ids=torch.tensor([alone])).logits[0]
            start, T = batch.response_start, len(response)
            got_T_V = logits_B_L_V[b, start - 1 : start - 1 + T]
            torch.testing.assert_close(got_T_V, ref_L_V[-T - 1 : -1], atol=1e-4, rtol=1e-4)


SPECIAL = ["<|im_end|>", "<|im_start|>assistant\n", "<think>", "</think>", "<|endoftext|>",
           "\\boxed{", "{{ x }}", "{% if %}", "\n\n", " "]
fuzz_text = st.lists(st.one_of(st.text(max_size=12), st.sampled_from(SPECIAL)), max_size=6).map(
    "".join
)


@pytest.fixture(scope="module")
def fuzz_renderers(smol_tokenizer):
    return [Renderer(smol_tokenizer, _config(t, s, not s, "student_prefix"))
            for t in (None, QWEN_LIKE) for s in (False, True)]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    problem=fuzz_text, solution=fuzz_text, sibling=st.one_of(st.none(), fuzz_text),
    response=st.lists(st.integers(0, 49151), max_size=12), which=st.integers(0, 3),
)
def test_fuzzed_text_keeps_alignment(fuzz_renderers, problem, solution, sibling, response, which):
    renderer = fuzz_renderers[which]
    example = Example(id="fuzz", problem=problem, solution=solution)
    batches = renderer.scoring_batches(list(ROLES), [example, example], [response, [1]],
                                       siblings=[sibling, None], feedbacks=[None, None])
    check_alignment(batches)
    for batch in batches.values():
        assert batch.response_ids_B_T[0, : len(response)].tolist() == response
        assert batch.ids_B_L.shape[1] == batch.response_start + max(len(response), 1)
    assert batches["reprompt"].has_context_B.tolist() == [sibling is not None, False]
