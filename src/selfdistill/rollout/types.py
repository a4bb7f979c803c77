"""Sampling parameters, the Sample record and the backend protocol every generator implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SamplingParams:
    """How to sample responses.

    Attributes:
        temperature: softmax temperature (> 0 when sampling).
        top_p: nucleus mass kept (1.0 = off).
        top_k: keep the k most likely tokens (0 = off).
        max_new_tokens: response length cap, in tokens; a response that reaches it without a stop
            token is marked ``truncated``.
        seed: seeds the sampler so a call is reproducible (the global RNG is left untouched);
            None uses the global RNG.
        do_sample: False gives greedy decoding (temperature/top_p/top_k ignored).
        n: samples per prompt; the result holds ``n`` consecutive Samples per prompt (a GRPO group).
        stop_token_ids: extra ids that end a response (the tokenizer's eos always does).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    seed: int | None = None
    do_sample: bool = True
    n: int = 1
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.do_sample and self.temperature <= 0:
            raise ValueError(
                f"temperature={self.temperature}: must be > 0 when sampling; "
                "use do_sample=False for greedy decoding"
            )
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p={self.top_p}: must be in (0, 1]")
        if self.top_k < 0 or self.max_new_tokens < 1 or self.n < 1:
            raise ValueError(
                f"top_k={self.top_k} must be >= 0, max_new_tokens={self.max_new_tokens} >= 1, "
                f"n={self.n} >= 1"
            )


@dataclass(frozen=True)
class Sample:
    """One generated response.

    Attributes:
        prompt_index: index of its prompt in the ``prompt_ids`` list given to ``generate``.
        response_ids: generated ids, padding removed, ending with the stop token if one was made.
        text: ``response_ids`` decoded without special tokens.
        truncated: True when the response hit ``max_new_tokens`` without a stop token.
        num_tokens: ``len(response_ids)``.
    """

    prompt_index: int
    response_ids: list[int]
    text: str
    truncated: bool
    num_tokens: int


class RolloutBackend(Protocol):
    """A generator of responses for tokenized prompts."""

    def generate(
        self, prompt_ids: list[list[int]], params: SamplingParams, *, batch_size: int | None = None
    ) -> list[Sample]:
        """Samples in prompt order (``n`` consecutive per prompt)."""
        ...
