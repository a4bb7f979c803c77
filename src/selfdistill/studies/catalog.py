"""The studies: each paper experiment as a grid of cells with a CPU default and a GPU configuration.

CPU defaults use SmolLM2-135M on one-digit arithmetic (reasoning-gym) with the last number as the
answer when nothing is boxed; they show whether the pipelines run and which way lengths, markers
and the diagnostics move, not the papers' accuracy gains. GPU configurations name the papers'
models and settings; where a paper's data set is not public or not named, the stand-in is ours and
the study's notes say so. docs/studies.md documents every study.
"""

from __future__ import annotations

from pathlib import Path

from .grid import Cell, Study

_RG = "rg:{task}?min_terms={terms}&max_terms={terms}&min_digits=1&max_digits=1&size={size}&seed={seed}"
OOD_CPU = _RG.format(task="chain_sum", terms=3, size=200, seed=3)
_NO_REFERENCE = "(no reference solution is available for this problem)"


# ---------------------------------------------------------------- context-richness (2603.24472)

def _richness_data(variant: str):
    """Data builder: the training set with its reference replaced by the ``variant`` context."""
    def build(s: dict, out: Path) -> str:
        from selfdistill.contexts.prompts import strip_think
        from selfdistill.data import load_examples

        path = Path(out) / "data" / f"reference-{variant}.jsonl"
        if path.exists():
            return str(path)
        import json

        rows = []
        for e in load_examples(s["train_data"], method="opsd"):
            full = f"<think>\n{e.solution}\n</think>\n\nThe answer is \\boxed{{{e.answer}}}."
            ref = {"full": full, "no-think": strip_think(full), "none": _NO_REFERENCE}[variant]
            rows.append({"id": e.id, "problem": e.problem, "solution": ref, "answer": e.answer})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tmp.replace(path)
        return str(path)
    return build


def _richness_cells(s: dict) -> list[Cell]:
    if s["method"] == "sdpo":  # the paper's setting: the SDPO sibling with / without its <think>
        return [Cell("c=s", {"method": "sdpo", "c": "s"}, "sdpo"),
                Cell("c=s-think", {"method": "sdpo", "c": "s∖think"}, "sdpo",
                     ["contexts={strip_think: true}"]),
                Cell("c=none", {"method": "grpo", "c": "∅"}, "grpo")]
    if s["method"] != "opsd":
        raise ValueError(f"context-richness: method must be opsd or sdpo, got {s['method']!r}")
    return [Cell(f"c={v}", {"method": "opsd", "c": label}, "opsd", data=_richness_data(v))
            for v, label in (("full", "s"), ("no-think", "s∖think"), ("none", "∅"))]


CONTEXT_RICHNESS = Study(
    name="context-richness",
    source="Kim et al., arXiv 2603.24472 (information richness of the teacher context, Table 1 and "
           "the SDPO c = s vs c = s∖think runs)",
    question="Does a richer teacher context (full solution, solution without its <think> block, "
             "nothing) shorten responses and suppress epistemic markers, and at what cost in accuracy?",
    cpu={"method": "opsd"},
    gpu={"method": "sdpo", "model": "Qwen/Qwen3-8B", "train_data": "openai/gsm8k:main",
         "eval_data": "aime24", "lr": 0.0, "train_temperature": -1.0},
    cells=_richness_cells,
    notes="CPU (`method=opsd`): SmolLM2 never writes <think> blocks, so SDPO siblings would be the "
          "same with and without strip_think. The CPU default therefore varies the OPSD reference: "
          "c=s is `<think>{worked solution}</think> The answer is \\boxed{a}.`, c=s∖think is that text "
          "after `contexts.prompts.strip_think` (the renderer's own function), and c=∅ replaces the "
          "reference by a fixed sentence saying none is available (the same teacher prompt with no "
          "information: plain self-distillation). GPU (`method=sdpo`): the paper's setting, the "
          "successful sibling with or without its <think> block (`contexts.strip_think`), and GRPO on "
          "the same rollouts for c=∅ (SDPO without a context has no loss at all).",
)


# ---------------------------------------------------------------- task-coverage (SDPO 2601.20802)

TASK_COVERAGE = Study(
    name="task-coverage",
    source="SDPO, arXiv 2601.20802, and Kim et al., arXiv 2603.24472 (training-set size |D|)",
    question="How do GRPO and SDPO scale with the number of distinct training problems, in training "
             "score, response length and out-of-distribution accuracy?",
    cpu={"sizes": [1, 8, 64], "rollouts": 4, "prompts_per_step": 2, "ood_data": OOD_CPU},
    gpu={"sizes": [1, 8, 64, 128, 512], "ood_data": "math500", "eval_data": "gsm8k", "lr": 0.0,
         "train_temperature": -1.0},
    cells=lambda s: [Cell(f"{m}-D{n}", {"method": m, "|D|": n}, m, [f"data.limit={n}"])
                     for m in ("grpo", "sdpo") for n in s["sizes"]],
    eval_sets=lambda s: {"in-dist": s["eval_data"], "ood": s["ood_data"]},
    notes="|D| is `data.limit` on a fixed shuffled source, so smaller sets are prefixes of larger "
          "ones. CPU default: |D| in {1, 8, 64} (the three cheapest, same steps each); OOD = 3-term "
          "chain sums. GPU: the five sizes of the paper, GSM8K train -> GSM8K test / MATH-500 "
          "(our stand-in for the paper's science QA sets).",
)


# ---------------------------------------------------------------- teacher-target (2603.24472 / SDPO)

TEACHER_TARGET = Study(
    name="teacher-target",
    source="SDPO, arXiv 2601.20802 (EMA teacher 0.05) and Kim et al., arXiv 2603.24472 (fixed teacher "
           "better on math)",
    question="Fixed teacher (the initial policy) vs an EMA teacher that follows the student.",
    cpu={"ema_rates": [0.01, 0.05], "rollouts": 4, "prompts_per_step": 2},
    gpu={"lr": 0.0, "train_temperature": -1.0},
    cells=lambda s: [Cell("fixed", {"teacher": "fixed"}, "sdpo", ["method.teacher=fixed"])]
    + [Cell(f"ema-{r:g}", {"teacher": f"ema {r:g}"}, "sdpo", ["method.teacher=ema", f"method.ema_rate={r}"])
       for r in s["ema_rates"]],
)


# ---------------------------------------------------------------- offline-sft (2603.24472)

OFFLINE_SFT = Study(
    name="offline-sft",
    source="Kim et al., arXiv 2603.24472 (SFT on correct solution-guided traces: AIME24 54.8 -> 20.2 "
           "on R1-Distill-Qwen-7B)",
    question="Fine-tune on the model's own correct responses, generated unguided vs with the solution "
             "in the prompt; does the solution-guided set degrade the model?",
    cpu={"gen_problems": 64, "gen_samples": 4, "keep": "correct", "sft_lr": 1e-4, "sft_epochs": 2,
         "sft_batch_size": 8},
    gpu={"model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "gen_problems": 2000, "gen_samples": 4,
         "max_new_tokens": 16384, "train_temperature": 0.6, "sft_lr": 1e-5, "sft_epochs": 1,
         "sft_batch_size": 32},
    cells=lambda s: [Cell("sft-unguided", {"generation": "unguided (question only)"}, sft_guide="student"),
                     Cell("sft-guided", {"generation": "solution-guided (teacher prompt)"},
                          sft_guide="teacher")],
    notes="Both sets are scored with the same reward and filtered the same way (`keep=correct`; "
          "`keep=all` keeps every response). The SFT prompt is always the student prompt. GPU: the "
          "paper's model; its training problems are not named in our notes, GSM8K train is our "
          "stand-in.",
)


# ---------------------------------------------------------------- purified-ablation (2607.02234)

def _purified_cells(s: dict) -> list[Cell]:
    clips, betas = s["clips"], s["betas"]
    c0 = 10.0 if 10.0 in clips else clips[0]
    b0 = 1.0 if 1.0 in betas else betas[0]
    if s["grid"] == "cross":
        pairs = [(c, b) for c in clips for b in betas]
    elif s["grid"] == "axes":
        pairs = [(c, b0) for c in clips] + [(c0, b) for b in betas if b != b0]
    else:
        raise ValueError(f"purified-ablation: grid must be axes or cross, got {s['grid']!r}")
    cells = [Cell("opsd", {"method": "opsd", "c": "", "beta": "", "anchor": ""}, "opsd",
                  ["diagnostics.pmi=true"])]
    for c, b in pairs:
        cells.append(Cell(f"purified-c{c:g}-b{b:g}", {"method": "purified", "c": c, "beta": b, "anchor": "base"},
                          "purified-opsd", [f"objective.purified_clip={c}", f"objective.purified_beta={b}"]))
    for a in s["anchors"]:
        if a != "base":
            cells.append(Cell(f"purified-c{c0:g}-b{b0:g}-{a}", {"method": "purified", "c": c0, "beta": b0,
                                                                "anchor": a}, "purified-opsd",
                              [f"objective.purified_clip={c0}", f"objective.purified_beta={b0}",
                               f"method.anchor={a}"]))
    return cells


PURIFIED_ABLATION = Study(
    name="purified-ablation",
    source="Purified OPSD, arXiv 2607.02234 (ablations over the soft clip c and the KL strength beta)",
    question="Standard OPSD vs Purified OPSD over c in {5, 10, 20}, beta in {0.5, 1, 2} and the anchor "
             "(frozen base vs detached student), with the PMI diagnostics over training.",
    cpu={"clips": [5.0, 10.0, 20.0], "betas": [0.5, 1.0, 2.0], "anchors": ["base", "student"],
         "grid": "axes", "steps": 6},
    gpu={"grid": "cross", "lr": 0.0, "train_temperature": -1.0, "rollouts": 1,
         "train_data": "openai/gsm8k:main"},
    cells=_purified_cells,
    notes="CPU default (`grid=axes`): the two axes through c=10, beta=1 (c in {5, 10, 20} at beta=1, "
          "beta in {0.5, 2} at c=10) plus anchor=student at (10, 1) and standard OPSD with the "
          "diagnostics on: 7 cells instead of 11. `grid=cross` runs all 9 (c, beta) pairs (GPU "
          "default). GPU: the paper trains on DASD-10K / Math-CoT-20K (not available offline); GSM8K "
          "train with its worked solutions is our stand-in, evaluation on AIME24 avg@12.",
)


# ---------------------------------------------------------------- srpo (2604.02288)

SRPO = Study(
    name="srpo",
    source="SRPO, arXiv 2604.02288 (GRPO vs SDPO vs SRPO at equal wall clock: 1 h / 5 h / 10 h)",
    question="At an equal training-time budget, does routing wrong samples to distillation and the "
             "rest to GRPO beat either method alone?",
    cpu={"budget_s": 120.0, "probe_steps": 2, "rollouts": 4, "prompts_per_step": 2},
    gpu={"budget_s": 3600.0, "probe_steps": 3, "lr": 0.0, "train_temperature": -1.0},
    cells=lambda s: [Cell(m, {"method": m, "budget s": s["budget_s"]}, m, budget_s=s["budget_s"])
                     for m in ("grpo", "sdpo", "srpo")],
    notes="The trainer has no time-budget option: each cell first runs `probe_steps` steps, takes "
          "the median seconds per step of the probe (the first step is excluded when there are two "
          "or more), and continues from the probe's checkpoint up to floor(budget / that) steps. "
          "Model loading and evaluation are outside the budget; on a shared machine the measured "
          "speed varies and so do the step counts (see the steps column). GPU: 3600 s = the paper's "
          "first report point; `budget_s=18000` / `36000` for the 5 h / 10 h points.",
)


STUDIES: dict[str, Study] = {s.name: s for s in (CONTEXT_RICHNESS, TASK_COVERAGE, TEACHER_TARGET,
                                                  OFFLINE_SFT, PURIFIED_ABLATION, SRPO)}
