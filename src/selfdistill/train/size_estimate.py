"""How big a run is, said before it starts: sampled tokens and a rough time on this machine.

Tokens: ``steps x prompts_per_step x rollouts_per_prompt x max_new_tokens``, an upper bound
(responses may stop early). Time, on a CPU only: the measured cost of one OPSD step at the run's
dtype in docs/benchmarks/step.md (SmolLM2-135M, 8 prompts x 128 new tokens, 2 torch threads, a
2-vCPU AMD EPYC: 14.9 s in bf16 with native bf16, 32.5 s in float32 on the AVX2 path), scaled
linearly by parameters, sampled tokens and threads, times 1.25 for Purified OPSD's two extra
passes. It is an order of magnitude, not a promise: the point is that
a 30-hour run does not start without a word. On a GPU only the token count is printed.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from .config import TrainConfig

from selfdistill import methods

log = logging.getLogger(__name__)

# docs/benchmarks/step.md, 2026-12-03: selfdistill-opsd seconds per step by dtype (bf16 on the
# AVX-512 bf16 CPU; float32 on the AVX2 path); float16 on a CPU is emulated, counted as float32
BENCH_SECONDS_BY_DTYPE = {"bfloat16": 14.92, "float32": 32.47, "float16": 32.47}
BENCH_SECONDS = BENCH_SECONDS_BY_DTYPE["bfloat16"]
BENCH_TOKENS, BENCH_PARAMS, BENCH_THREADS = 8 * 128, 134.5e6, 2
WARN_SECONDS = 3600.0


@dataclass(frozen=True)
class SizeEstimate:
    """Sampled tokens of the remaining steps and, on a CPU, a rough time in seconds (else None)."""

    steps: int
    tokens_per_step: int
    seconds: float | None

    @property
    def tokens(self) -> int:
        return self.steps * self.tokens_per_step


def estimate(cfg: TrainConfig, *, num_params: int, device_type: str, threads: int,
             start_step: int = 0, dtype: str = "bfloat16") -> SizeEstimate:
    """The size of the steps from ``start_step`` to ``schedule.max_steps`` (see the module docstring);
    ``dtype`` is the run's resolved weight dtype (``selfdistill.hardware``)."""
    steps = max(0, cfg.schedule.max_steps - start_step)
    per_step = cfg.schedule.prompts_per_step * cfg.sampling.rollouts_per_prompt * cfg.sampling.max_new_tokens
    seconds = None
    if device_type == "cpu":
        bench = BENCH_SECONDS_BY_DTYPE.get(dtype, BENCH_SECONDS)
        per_token_param = bench / (BENCH_TOKENS * BENCH_PARAMS) * BENCH_THREADS / max(1, threads)
        seconds = steps * per_step * num_params * per_token_param * methods.of(cfg.method).cost_factor
    return SizeEstimate(steps=steps, tokens_per_step=per_step, seconds=seconds)


def duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.4 h``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def announce(size: SizeEstimate, cfg: TrainConfig) -> None:
    """Print the size line on stderr; a WARNING when the rough time exceeds an hour."""
    s, p = cfg.schedule, cfg.sampling
    line = (f"selfdistill: run size: {size.steps} steps x {s.prompts_per_step} prompts x "
            f"{p.rollouts_per_prompt} rollouts x up to {p.max_new_tokens} new tokens = up to "
            f"{size.tokens:,} sampled tokens")
    if size.seconds is not None:
        line += f"; rough time on this CPU: ~{duration(size.seconds)} (scaled from docs/benchmarks/step.md)"
    print(line, file=sys.stderr)
    if size.seconds is not None and size.seconds > WARN_SECONDS:
        log.warning("this run may take ~%s on this CPU (over an hour): for a first try lower "
                    "schedule.max_steps (%d), schedule.prompts_per_step (%d) or sampling.max_new_tokens (%d), "
                    "or run on a GPU", duration(size.seconds), s.max_steps, s.prompts_per_step, p.max_new_tokens)


def after_first_step(step_seconds: float, remaining_steps: int) -> None:
    """The measured pace after the first step of this session: the remaining steps at that pace on
    stderr, and a WARNING when that exceeds an hour (the start-up estimate can be far off on a
    shared machine or for tiny steps, where fixed costs dominate)."""
    total = step_seconds * remaining_steps
    print(f"selfdistill: first step took {duration(step_seconds)}; the remaining {remaining_steps} steps "
          f"take ~{duration(total)} at this pace", file=sys.stderr)
    if total > WARN_SECONDS:
        log.warning("at the measured pace the remaining %d steps take ~%s (over an hour)", remaining_steps,
                    duration(total))
