"""The eval runner: k samples per problem with the student prompt, math-verify rewards, metrics.

``evaluate`` is the Python API (the trainer and the demo call it); ``run_benchmarks`` adds the
files of ``selfdistill eval``: ``samples.jsonl`` (one row per sample, written as generated),
``summary.json`` and ``summary.md``.

A sample row: model, benchmark, problem_id, sample_index, prompt (the problem text; the rendered
chat prompt of the first problem is kept once in the summary as ``prompt_example``), response,
pred (the final answer read with the scorer's answer_format, default the last boxed one after any ``</think>``; None when there is none), gold, correct, num_tokens,
thinking_tokens (tokens of the text inside ``<think>...</think>``), truncated, markers_word,
markers_paper (per-marker counts with "total"), sampling {...}.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from selfdistill.analysis.markers import count_epistemic_markers
from selfdistill.contexts import Renderer
from selfdistill.eval.metrics import summarize_samples, thinking_text
from selfdistill.rewards import RewardScorer, extract_answer
from selfdistill.rollout import HFGenerate, RolloutBackend, SamplingParams
from selfdistill.types import Example


def sampling_record(params: SamplingParams, k: int) -> dict:
    """The sampling settings stored next to every number (docs/methods.md section 9)."""
    return {"k": k, "temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k,
            "max_new_tokens": params.max_new_tokens, "seed": params.seed, "do_sample": params.do_sample}


def evaluate(model, tokenizer, examples: Sequence[Example], *, k: int, params: SamplingParams,
             renderer: Renderer, pass_ks: Sequence[int] = (1,), benchmark: str = "eval",
             model_name: str = "model", scorer: RewardScorer | None = None,
             problems_per_batch: int = 8, on_sample: Callable[[dict], None] | None = None,
             progress: bool = True, reward_timeout_s: float = 5.0,
             backend: RolloutBackend | None = None, role: str = "student") -> tuple[dict, list[dict]]:
    """Sample ``k`` responses per example with the ``role`` prompt (student: the question only)
    and score them.

    Args:
        params: sampling settings; its ``n`` is replaced by ``k``. With a seed, chunk i of
            ``problems_per_batch`` problems uses ``seed + i`` (reproducible, not repeated).
        renderer: builds the student prompts (the same renderer as training).
        scorer: reward checker; a one-worker RewardScorer is made (and closed) when None.
        on_sample: called with every sample row as soon as it is scored (e.g. to append it to
            a file).
        backend: the generator (default ``HFGenerate(model, tokenizer)``).
    Returns:
        (summary, rows): the summary of ``summarize_samples`` for this benchmark plus
        ``model``, ``benchmark``, ``sampling`` and ``prompt_example``; the sample rows.
    """
    if k < 1:
        raise ValueError(f"k={k}: need at least one sample per problem")
    if not examples:
        raise ValueError(f"benchmark {benchmark!r} has no examples")
    for i, ex in enumerate(examples):
        if ex.answer is None:
            raise ValueError(f"{benchmark} example {ex.id!r} ({ex.origin or f'row {i}'}) has no gold "
                             "answer; evaluation needs an answer column (map it with columns=...)")
    bad_k = [p for p in pass_ks if not 1 <= p <= k]
    if bad_k:
        raise ValueError(f"pass@k values {bad_k} need 1 <= k <= samples per problem ({k}); raise --k")
    sampling = sampling_record(params, k)
    own_scorer = scorer is None
    scorer = scorer or RewardScorer(timeout_s=reward_timeout_s, workers=1)
    backend = backend or HFGenerate(model, tokenizer)
    prompts = [renderer.prompt_ids(role, ex) for ex in examples]
    bar = _progress(len(examples) * k, f"eval {benchmark}", progress)
    rows: list[dict] = []
    try:
        for chunk, start in enumerate(range(0, len(examples), problems_per_batch)):
            stop = min(start + problems_per_batch, len(examples))
            seed = None if params.seed is None else params.seed + chunk
            samples = backend.generate(prompts[start:stop], dataclasses.replace(params, n=k, seed=seed))
            chunk_examples = [examples[start + s.prompt_index] for s in samples]
            correct = scorer.score([s.text for s in samples], [ex.answer for ex in chunk_examples])
            for j, (sample, ex, reward) in enumerate(zip(samples, chunk_examples, correct)):
                row = _row(tokenizer, sample, ex, j % k, reward, benchmark, model_name, sampling,
                           scorer.answer_format)
                rows.append(row)
                if on_sample is not None:
                    on_sample(row)
            bar.update(len(samples))
    finally:
        bar.close()
        if own_scorer:
            scorer.close()
    summary = summarize_samples(rows, pass_ks)[benchmark]
    summary.update({"model": model_name, "benchmark": benchmark, "sampling": sampling,
                    "answer_format": scorer.answer_format,
                    "prompt_example": tokenizer.decode(prompts[0], skip_special_tokens=False)})
    return summary, rows


def _row(tokenizer, sample, example: Example, index: int, reward: float, benchmark: str,
         model_name: str, sampling: dict, answer_format: str = "boxed") -> dict:
    text = sample.text
    thinking = thinking_text(text)
    thinking_tokens = len(tokenizer(thinking, add_special_tokens=False)["input_ids"]) if thinking else 0
    return {
        "model": model_name, "benchmark": benchmark, "problem_id": example.id, "sample_index": index,
        "prompt": example.problem, "response": text, "pred": extract_answer(text, answer_format),
        "gold": example.answer, "correct": bool(reward >= 1.0), "num_tokens": sample.num_tokens,
        "thinking_tokens": thinking_tokens, "truncated": bool(sample.truncated),
        "markers_word": count_epistemic_markers(text, "word"),
        "markers_paper": count_epistemic_markers(text, "paper"), "sampling": sampling,
    }


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sample")


SUMMARY_COLUMNS = ("benchmark", "num_problems", "samples_per_problem", "avg@k", "pass@k", "maj@k",
                   "truncation_rate", "no_answer_rate", "mean_tokens", "mean_thinking_tokens", "markers_word_per_1k",
                   "markers_paper_per_1k")


def hardware_line(hardware: dict) -> str:
    """``device cpu (processor, AVX2), float32: reason`` from a ``Hardware.describe()`` record."""
    return (f"device {hardware.get('device')} ({hardware.get('processor')}, "
            f"{hardware.get('cpu_capability')}), {hardware.get('dtype')}: {hardware.get('reason')}")


RATE_COLUMNS = ("avg@k", "maj@k", "truncation_rate", "no_answer_rate")


def rate(value: float) -> str:
    """The one format of every rate in eval tables: three decimals (0.000, 0.125, 1.000)."""
    return f"{value:.3f}"


def summary_rows(summaries: dict[str, dict]) -> list[dict]:
    """Flatten per-benchmark summaries into table rows: rates (avg@k, every pass@k, maj@k,
    truncation, no answer) as text in one format (``rate``)."""
    rows = []
    for bench, s in summaries.items():
        n = s["samples_per_problem"]
        passes = ", ".join(f"@{key.split('@')[1]} {rate(s[key])}" for key in s if key.startswith("pass@"))
        row = {"benchmark": bench, "num_problems": s["num_problems"], "samples_per_problem": n,
               "avg@k": s[f"avg@{n}"], "pass@k": passes, "maj@k": s[f"maj@{n}"],
               **{c: s.get(c, 0.0) for c in SUMMARY_COLUMNS[6:]}}
        rows.append({c: rate(v) if c in RATE_COLUMNS else v for c, v in row.items()})
    return rows


def no_answer_warning(benchmark: str, summary: dict, answer_format: str) -> str | None:
    """A warning when more than half of the samples gave no answer under ``answer_format``
    (they all count as wrong), with the option that reads unboxed answers; else None."""
    share = summary.get("no_answer_rate", 0.0)
    if share <= 0.5:
        return None
    hint = ("the model may not write \\boxed{}: try --answer-format boxed_or_last_number (reads the last "
            "number when nothing is boxed)" if answer_format == "boxed" else
            "raise --max-new-tokens if responses are cut off (see truncation_rate)")
    return (f"{benchmark}: {share:.0%} of the samples gave no answer under --answer-format {answer_format}, "
            f"so they count as wrong; {hint}")


def write_summary(summaries: dict[str, dict], output_dir: str | Path, *,
                  hardware: dict | None = None) -> tuple[Path, Path]:
    """Write summary.json (everything) and summary.md (the table plus the sampling settings).

    ``hardware``: ``selfdistill.hardware.Hardware.describe()`` of the run; stored as the
    ``hardware`` entry of every benchmark's summary and as a line of summary.md.
    """
    from selfdistill.analysis.tables import markdown_table

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if hardware is not None:
        for summary in summaries.values():
            summary["hardware"] = hardware
    json_path, md_path = out / "summary.json", out / "summary.md"
    json_path.write_text(json.dumps(summaries, indent=2), encoding="utf-8")
    lines = ["# Evaluation summary", ""]
    first = next(iter(summaries.values()))
    lines += [f"Model: `{first['model']}`. Sampling: "
              + ", ".join(f"{k}={v}" for k, v in first["sampling"].items())
              + (f". Answers read with answer_format `{first['answer_format']}`" if "answer_format" in first
                 else ""), ""]
    if hardware is not None:
        lines += [f"Hardware: {hardware_line(hardware)}.", ""]
    lines.append(markdown_table(summary_rows(summaries), SUMMARY_COLUMNS))
    lines.append("k = samples per problem; pass@k is the unbiased estimator; maj@k votes over "
                 "extracted answers (ties: first occurrence); no_answer_rate: samples with no extracted "
                 "answer; markers per 1k response tokens.")
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return json_path, md_path
