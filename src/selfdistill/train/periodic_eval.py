"""Evaluation during training (the ``eval`` section): every ``eval.every`` steps and at the last.

The current policy (the unwrapped student, LoRA adapter on) samples ``eval.k`` responses per
held-out problem with the student prompt of the run's own renderer, and the scorer of
``selfdistill eval`` (``eval.runner.evaluate``, rewards read with ``rewards.answer_format``) turns
them into the metrics merged into that step's metrics row:

    eval/avg@K  eval/pass@1 (and eval/pass@K)  eval/maj@K  eval/mean_tokens
    eval/mean_thinking_tokens  eval/truncated_frac  eval/markers_per_1k (word mode, as the training
    row's markers/per_1k)  eval/markers_paper_per_1k  eval/problems  eval/time_s

The sample rows (the ``samples.jsonl`` format of ``selfdistill eval``) go to
``output_dir/eval/step-NNNNNN.jsonl``. The problems are ``load_benchmark(eval.data,
limit=eval.limit, seed=0)``, the same problems ``selfdistill eval --benchmarks DATA --limit N``
uses; every evaluation samples with the same seed (``seed`` of the run), so two steps differ by
the policy, not by the draw. Only the main process evaluates (the others go on and wait for it
at their next collective); it returns ``{}`` elsewhere and at steps that are not due.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .config import TrainConfig


class PeriodicEval:
    """Built once by the Trainer when ``eval.every > 0``; call :meth:`maybe` after every step.

    Args:
        cfg: the run's config (``eval`` section, ``schedule.max_steps``, ``sampling.max_new_tokens``
            as the default response limit, ``rewards.answer_format``, ``seed``, ``output_dir``).
        is_main: whether this process evaluates (others never load the data or start a scorer).
    """

    def __init__(self, cfg: TrainConfig, *, is_main: bool = True) -> None:
        from selfdistill.rollout import SamplingParams

        ev = cfg.eval
        if ev.every <= 0 or not ev.data:
            raise ValueError(f"eval.every={ev.every}, eval.data={ev.data!r}: PeriodicEval needs "
                             "eval.every > 0 and eval.data (held-out problems with answers)")
        self.every, self.max_steps, self.k = ev.every, cfg.schedule.max_steps, ev.k
        self.folder = Path(cfg.output_dir) / "eval"
        self.label = ev.data
        self.problems_per_batch = ev.problems_per_batch
        self.params = SamplingParams(
            temperature=ev.temperature if ev.temperature > 0 else 1.0, top_p=ev.top_p, top_k=ev.top_k,
            max_new_tokens=ev.max_new_tokens or cfg.sampling.max_new_tokens, seed=cfg.seed,
            do_sample=ev.temperature > 0)
        self.progress = cfg.logging.progress
        self.is_main = is_main
        self.examples: list = []
        self.scorer = None
        if is_main:
            from selfdistill.eval.benchmarks import load_benchmark
            from selfdistill.rewards import RewardScorer

            self.examples = load_benchmark(ev.data, limit=ev.limit, seed=0)
            self.scorer = RewardScorer(timeout_s=cfg.rewards.timeout_s, workers=1,
                                       answer_format=cfg.rewards.answer_format)

    def due(self, step: int) -> bool:
        """Whether ``step`` evaluates: every ``eval.every`` steps and at ``schedule.max_steps``."""
        return step % self.every == 0 or step == self.max_steps

    def maybe(self, step: int, model, tokenizer, renderer) -> dict:
        """The ``eval/*`` metrics of the policy after ``step`` when due on this process, else {}.

        Args:
            model: the unwrapped student (LoRA adapter on); sampled in eval mode without grad,
                its train/eval flags are restored afterwards.
            renderer: the run's renderer (the student prompt of training).
        """
        if not (self.is_main and self.due(step)):
            return {}
        from selfdistill.eval.runner import evaluate

        t0 = time.perf_counter()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"step-{step:06d}.jsonl"
        with open(path, "w", encoding="utf-8") as sink:  # a resumed run re-evaluates: overwrite
            def append(row: dict) -> None:
                sink.write(json.dumps({"step": step, **row}) + "\n")

            summary, _ = evaluate(model, tokenizer, self.examples, k=self.k, params=self.params,
                                  renderer=renderer, pass_ks=sorted({1, self.k}), benchmark=self.label,
                                  model_name=f"step-{step:06d}", scorer=self.scorer,
                                  problems_per_batch=self.problems_per_batch, on_sample=append,
                                  progress=self.progress)
        if step >= self.max_steps:
            self.close()
        return metrics_row(summary, time.perf_counter() - t0)

    def close(self) -> None:
        """Stop the reward workers (also done at exit when never called)."""
        if self.scorer is not None:
            self.scorer.close()
            self.scorer = None


def metrics_row(summary: dict, seconds: float) -> dict:
    """Flat ``eval/*`` keys from one benchmark summary of ``summarize_samples`` (module docstring)."""
    k = summary["samples_per_problem"]
    row = {f"eval/avg@{k}": summary[f"avg@{k}"]}
    row.update({f"eval/{key}": value for key, value in summary.items() if key.startswith("pass@")})
    row.update({
        f"eval/maj@{k}": summary[f"maj@{k}"], "eval/mean_tokens": summary["mean_tokens"],
        "eval/mean_thinking_tokens": summary["mean_thinking_tokens"],
        "eval/truncated_frac": summary["truncation_rate"],
        "eval/markers_per_1k": summary["markers_word_per_1k"],
        "eval/markers_paper_per_1k": summary["markers_paper_per_1k"],
        "eval/problems": summary["num_problems"], "eval/time_s": seconds,
    })
    return row
