"""The one renderer: every role's prompt through the tokenizer's chat template, as token ids.

Thinking boundary. A Qwen3-style template ends the generation prompt with ``<|im_start|>assistant\n``
when thinking is on and with ``<|im_start|>assistant\n<think>\n\n</think>\n\n`` when it is off, so a
thinking-on teacher scoring a thinking-off student's response would want ``<think>`` where the
student starts its answer. We split every rendered prompt into its *conversation* part and its
*generation suffix* (the tokens ``add_generation_prompt=True`` adds: the assistant header plus any
think block) and apply ``ContextConfig.think_boundary``:

- ``"student_prefix"`` (default): every role = its own conversation + the STUDENT's generation
  suffix, so the first scored position means the same thing in every role;
- ``"own"``: every role keeps its own template output, allowed only when its generation suffix
  equals the student's, else ThinkBoundaryError;
- ``"own_any_suffix"``: every role keeps its own template output whatever its generation suffix
  (OPSD's current code: a thinking-on teacher scores a thinking-off student's response right after
  its own ``<|im_start|>assistant\n``). The response ids are still the student's, unchanged.

Ids are always prompt_ids + response_ids: the prompt/response seam is never re-tokenized.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from selfdistill.contexts import prompts
from selfdistill.contexts.batch import (
    Dropped,
    PromptBatch,
    ScoringBatch,
    assemble,
    check_alignment,
)
from selfdistill.contexts.config import (
    ROLES,
    ContextConfig,
    ContextError,
    ContextLengthError,
    ThinkBoundaryError,
)
from selfdistill.types import Example

_SENSIBLE_MAX_LENGTH = 10**7
_PROBE_PROBLEM = "1 + 1 = ?"  # any question: the generation suffix must not depend on it


class Renderer:
    """Renders every role of a ContextConfig with one tokenizer.

    Args:
        tokenizer: a Hugging Face tokenizer with a chat template (or ``config.chat_template``).
        config: the rendering options.
    """

    def __init__(self, tokenizer, config: ContextConfig | None = None) -> None:
        self.tokenizer = tokenizer
        self.config = config or ContextConfig()
        if self.config.chat_template is None and not getattr(tokenizer, "chat_template", None):
            raise ContextError(
                "the tokenizer has no chat template; set ContextConfig.chat_template to a jinja "
                "template (every role is rendered through it)"
            )
        self.max_length = self._resolve_max_length()
        pad_id = tokenizer.pad_token_id
        self.pad_id = pad_id if pad_id is not None else tokenizer.eos_token_id
        if self.pad_id is None:
            raise ContextError("the tokenizer has neither a pad nor an eos token; set pad_token")
        self.vocab_size = len(tokenizer)
        self._student_suffix: list[int] | None = None

    def _resolve_max_length(self) -> int:
        if self.config.max_length is not None:
            return self.config.max_length
        limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < _SENSIBLE_MAX_LENGTH:
            return limit
        raise ContextError(
            f"ContextConfig.max_length is required: tokenizer.model_max_length={limit} is not a "
            "real limit. Set it to the model's context size (prompt + response tokens)."
        )

    # ---- text ---------------------------------------------------------------------------------

    def user_text(
        self, role: str, example: Example, *, sibling: str | None = None,
        feedback: str | None = None,
    ) -> str | None:
        """The user turn of ``role`` for ``example``; None for a reprompt without any context."""
        if role not in ROLES:
            raise ContextError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if role in ("student", "base"):
            return prompts.student_text(example.problem)
        if role == "blank":
            return self.config.blank_text
        if role == "reprompt":
            if sibling is not None and self.config.strip_think:
                sibling = prompts.strip_think(sibling)
            return prompts.reprompt_text(example.problem, sibling, feedback)
        if example.solution is None:
            raise ContextError(
                f"example {example.id!r} ({example.origin or 'unknown origin'}): role {role!r} "
                "needs a reference solution but Example.solution is None; fix: load a solution "
                "column, or drop such rows for methods that use a reference"
            )
        if role == "teacher":
            return prompts.teacher_text(example.problem, example.solution, self.config.transition)
        return prompts.refonly_text(example.solution, self.config.transition)

    def _template(self, role: str, text: str, generation: bool) -> list[int]:
        options = self.config.options(role)
        messages = []
        if options.system_prompt is not None:
            messages.append({"role": "system", "content": options.system_prompt})
        messages.append({"role": "user", "content": text})
        extra = {}
        if options.enable_thinking is not None:
            extra["enable_thinking"] = options.enable_thinking
        rendered = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation,
            chat_template=self.config.chat_template, **extra,
        )
        return list(self.tokenizer(rendered, add_special_tokens=False)["input_ids"])

    def _split(self, role: str, text: str) -> tuple[list[int], list[int]]:
        """(conversation ids, generation-suffix ids) of one rendered user turn."""
        full = self._template(role, text, generation=True)
        conversation = self._template(role, text, generation=False)
        common = 0
        for a, b in zip(full, conversation):
            if a != b:
                break
            common += 1
        return full[:common], full[common:]

    def student_suffix(self) -> list[int]:
        """The tokens the student's template adds after the conversation (assistant header + any
        think block): the first response token is predicted right after them in every role."""
        if self._student_suffix is None:
            self._student_suffix = self._split("student", prompts.student_text(_PROBE_PROBLEM))[1]
        return self._student_suffix

    # ---- ids ----------------------------------------------------------------------------------

    def _ids(self, role: str, text: str) -> list[int]:
        conversation, suffix = self._split(role, text)
        student = self.student_suffix()
        if suffix != student:
            if role == "student":
                raise ThinkBoundaryError(
                    "the student's generation prompt depends on the question text "
                    f"({self._show(suffix)} vs {self._show(student)}); this template cannot be "
                    "aligned across roles"
                )
            if self.config.think_boundary == "own_any_suffix":
                return conversation + suffix
            if self.config.think_boundary == "own":
                raise ThinkBoundaryError(
                    f"role {role!r} ends its prompt with {self._show(suffix)} but the student "
                    f"with {self._show(student)}: the first response token would be predicted "
                    "in different situations. Fix: give both roles the same enable_thinking, or "
                    "use think_boundary='student_prefix' (or 'own_any_suffix' to score with "
                    "the role's own generation prompt, as OPSD's current code does)"
                )
            return conversation + student
        return conversation + suffix

    def _show(self, ids: list[int]) -> str:
        return repr(self.tokenizer.decode(ids, skip_special_tokens=False))

    def prompt_ids(
        self, role: str, example: Example, *, sibling: str | None = None,
        feedback: str | None = None,
    ) -> list[int]:
        """Prompt token ids of ``role`` (ends with the generation prompt; see the module doc).

        Raises ContextError for a reprompt with neither sibling nor feedback, and
        ContextLengthError when the prompt alone exceeds ``max_length``.
        """
        text = self.user_text(role, example, sibling=sibling, feedback=feedback)
        if text is None:
            raise ContextError(
                f"example {example.id!r}: role 'reprompt' needs a successful sibling or feedback; "
                "scoring_batch renders such rows with the student prompt and flags them"
            )
        ids = self._ids(role, text)
        reason = self._over_length(role, example, len(ids), 0)
        if reason is not None:
            raise ContextLengthError(reason)
        return ids

    def prompts(
        self,
        role: str,
        examples: Sequence[Example],
        *,
        reserve_tokens: int = 0,
        siblings: Sequence[str | None] | None = None,
        feedbacks: Sequence[str | None] | None = None,
    ) -> PromptBatch:
        """Generation prompts for a batch, applying the over-length policy with room for
        ``reserve_tokens`` new tokens (e.g. ``max_new_tokens``) after each prompt."""
        n = len(examples)
        siblings = list(siblings) if siblings is not None else [None] * n
        feedbacks = list(feedbacks) if feedbacks is not None else [None] * n
        batch = PromptBatch(role=role, ids=[], kept=[])
        for i, example in enumerate(examples):
            text = self.user_text(role, example, sibling=siblings[i], feedback=feedbacks[i])
            if text is None:
                raise ContextError(f"example {example.id!r}: role {role!r} has no context to render")
            ids = self._ids(role, text)
            reason = self._over_length(role, example, len(ids), reserve_tokens)
            if reason is None:
                batch.ids.append(ids)
                batch.kept.append(i)
            elif self.config.over_length == "drop":
                batch.dropped.append(Dropped(i, example.id, role, reason))
            else:
                raise ContextLengthError(reason)
        return batch

    def prompt_text(self, role: str, example: Example, **kwargs) -> str:
        """The decoded prompt (for logs and docs)."""
        ids = self.prompt_ids(role, example, **kwargs)
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _over_length(self, role: str, example: Example, n_prompt: int, n_response: int) -> str | None:
        if n_prompt + n_response <= self.max_length:
            return None
        return (
            f"role {role!r} of example {example.id!r} ({example.origin or 'unknown origin'}): "
            f"{n_prompt} prompt + {n_response} response = {n_prompt + n_response} tokens > "
            f"max_length={self.max_length}. Contexts are never truncated. Fix: raise "
            "ContextConfig.max_length (up to the model's context size), lower max_new_tokens, "
            "filter long problems/solutions from the data, or set over_length='drop' to skip "
            "such rows (reported in ScoringBatch.dropped)"
        )

    # ---- batches ------------------------------------------------------------------------------

    def scoring_batches(
        self,
        roles: Sequence[str],
        examples: Sequence[Example],
        response_ids: Sequence[Sequence[int]],
        *,
        siblings: Sequence[str | None] | None = None,
        feedbacks: Sequence[str | None] | None = None,
    ) -> dict[str, ScoringBatch]:
        """One ScoringBatch per role over the same rows (a row too long in ANY role is dropped
        from all of them), checked with ``check_alignment``."""
        n = len(examples)
        siblings = list(siblings) if siblings is not None else [None] * n
        feedbacks = list(feedbacks) if feedbacks is not None else [None] * n
        if not (len(response_ids) == len(siblings) == len(feedbacks) == n):
            raise ContextError(
                f"{n} examples but {len(response_ids)} responses, {len(siblings)} siblings and "
                f"{len(feedbacks)} feedbacks; pass one per example"
            )
        responses = [self._check_response(i, examples[i], r) for i, r in enumerate(response_ids)]
        rendered: dict[str, list[tuple[list[int], bool]]] = {}
        dropped: dict[int, Dropped] = {}
        for role in roles:
            rows = []
            for i, example in enumerate(examples):
                text = self.user_text(role, example, sibling=siblings[i], feedback=feedbacks[i])
                has_context = text is not None
                ids = self._ids(role, text) if has_context else self._ids(
                    "student", prompts.student_text(example.problem))
                reason = self._over_length(role, example, len(ids), len(responses[i]))
                if reason is not None:
                    if self.config.over_length == "error":
                        raise ContextLengthError(reason)
                    dropped.setdefault(i, Dropped(i, example.id, role, reason))
                rows.append((ids, has_context))
            rendered[role] = rows
        kept = [i for i in range(n) if i not in dropped]
        lost = sorted(dropped.values(), key=lambda d: d.index)
        batches = {
            role: assemble(
                role,
                [rows[i][0] for i in kept],
                [responses[i] for i in kept],
                [rows[i][1] for i in kept],
                kept,
                lost,
                self.pad_id,
            )
            for role, rows in rendered.items()
        }
        check_alignment(batches)
        return batches

    def scoring_batch(
        self,
        role: str,
        examples: Sequence[Example],
        response_ids: Sequence[Sequence[int]],
        *,
        siblings: Sequence[str | None] | None = None,
        feedbacks: Sequence[str | None] | None = None,
    ) -> ScoringBatch:
        """The ScoringBatch of one role (see ScoringBatch for the layout)."""
        return self.scoring_batches(
            [role], examples, response_ids, siblings=siblings, feedbacks=feedbacks
        )[role]

    def _check_response(self, i: int, example: Example, response: Sequence[int]) -> list[int]:
        """The response as a list of python ints, checked against the vocabulary."""
        where = f"response {i} (example {example.id!r})"
        if isinstance(response, str):
            raise ContextError(f"{where} is text; pass the sampled token ids")
        ids = []
        for token in response:  # python, numpy and 0-d torch integers; no floats or bools
            if isinstance(token, bool) or not hasattr(token, "__index__"):
                raise ContextError(f"{where} holds {token!r}, not an integer token id")
            ids.append(operator.index(token))
        bad = [t for t in ids if not 0 <= t < self.vocab_size]
        if bad:
            raise ContextError(
                f"{where} has token ids outside [0, {self.vocab_size}): {bad[:5]}"
            )
        return ids
