"""The offline-SFT cell: generate, keep the correct responses, fine-tune on them (arXiv 2603.24472).

``guide="student"`` samples from the question alone (unguided); ``guide="teacher"`` samples with
the reference solution in the prompt (the OPSD teacher context, solution-guided). Either way the
SFT pairs use the STUDENT prompt, so the fine-tuned model learns to produce the guided traces
without the solution: the paper's finding is that this degrades the model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .grid import Cell
from .jobs import say, write_json


def generate_pairs(s: dict, guide: str, cell_dir: Path) -> list[tuple[list[int], list[int]]]:
    """(student prompt ids, response ids) of the kept samples; cached in ``pairs.jsonl``."""
    pairs_path, summary_path = cell_dir / "pairs.jsonl", cell_dir / "generation.json"
    if summary_path.exists():
        rows = [json.loads(line) for line in pairs_path.read_text().splitlines() if line.strip()]
        return [(r["prompt_ids"], r["response_ids"]) for r in rows]
    from selfdistill.contexts import ContextConfig, Renderer
    from selfdistill.data import load_examples
    from selfdistill.models import load_model
    from selfdistill.rewards import RewardScorer
    from selfdistill.rollout import HFGenerate, SamplingParams

    t0 = time.perf_counter()
    examples = load_examples(s["train_data"], limit=s["gen_problems"], method="opsd")
    model, tokenizer = load_model(s["model"], dtype=s["dtype"], device=s.get("device", "auto"))
    renderer = Renderer(tokenizer, ContextConfig(max_length=model.config.max_position_embeddings))
    params = SamplingParams(temperature=s["train_temperature"], top_p=0.95, top_k=20,
                            max_new_tokens=s["max_new_tokens"], seed=s["seed"], n=s["gen_samples"])
    samples = HFGenerate(model, tokenizer).generate([renderer.prompt_ids(guide, e) for e in examples],
                                                    params)
    with RewardScorer(timeout_s=5.0, answer_format=s["answer_format"]) as scorer:
        rewards = scorer.score([x.text for x in samples], [examples[x.prompt_index].answer for x in samples])
    keep_all = s["keep"] == "all"
    rows = []
    for sample, r in zip(samples, rewards):
        if (r >= 1.0 or keep_all) and sample.response_ids:
            ex = examples[sample.prompt_index]
            rows.append({"id": ex.id, "reward": r, "prompt_ids": renderer.prompt_ids("student", ex),
                         "response_ids": list(sample.response_ids), "text": sample.text})
    cell_dir.mkdir(parents=True, exist_ok=True)
    with open(pairs_path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    lengths = [len(x.response_ids) for x in samples]
    write_json(summary_path, {
        "guide": guide, "problems": len(examples), "samples": len(samples),
        "correct": int(sum(r >= 1.0 for r in rewards)), "kept": len(rows), "keep": s["keep"],
        "mean_tokens": sum(lengths) / max(len(lengths), 1), "seconds": time.perf_counter() - t0})
    return [(r["prompt_ids"], r["response_ids"]) for r in rows]


def sft_cell(cell: Cell, s: dict, cell_dir: Path) -> Path | None:
    """Generate, filter and fine-tune; returns the run dir, or None when nothing was kept."""
    from selfdistill.train.sft import SFTConfig, train_sft

    run_dir = cell_dir / "run"
    done = cell_dir / "train.json"
    if done.exists():
        return run_dir if json.loads(done.read_text())["pairs"] else None
    pairs = generate_pairs(s, cell.sft_guide, cell_dir)
    say(f"  {len(pairs)} training pairs kept ({cell.sft_guide} generation, keep={s['keep']})")
    if not pairs:
        write_json(done, {"pairs": 0, "note": "no correct response to fine-tune on"})
        return None
    t0 = time.perf_counter()
    train_sft(pairs, SFTConfig(model=s["model"], output_dir=str(run_dir), dtype=s["dtype"],
                               device=s.get("device", "auto"),
                               lora_r=s["lora_r"], lora_alpha=2 * s["lora_r"], lr=s["sft_lr"],
                               epochs=s["sft_epochs"], batch_size=s["sft_batch_size"], seed=s["seed"]))
    write_json(done, {"pairs": len(pairs), "seconds_this_session": time.perf_counter() - t0})
    return run_dir
