"""The eval runner: scripted backend (known answers) and a real tiny-random run through the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from selfdistill.cli import main
from selfdistill.contexts import ContextConfig, Renderer
from selfdistill.eval.runner import evaluate
from selfdistill.rollout import Sample, SamplingParams
from selfdistill.types import Example


class ScriptedBackend:
    """Returns fixed texts per prompt, in the order HFGenerate would (n consecutive per prompt)."""

    def __init__(self, tokenizer, texts_per_prompt: list[list[str]]):
        self.tokenizer, self.texts = tokenizer, texts_per_prompt
        self.calls: list[tuple[int, SamplingParams]] = []
        self.offset = 0

    def generate(self, prompt_ids, params, *, batch_size=None):
        self.calls.append((len(prompt_ids), params))
        out = []
        for i in range(len(prompt_ids)):
            for text in self.texts[self.offset + i][: params.n]:
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                out.append(Sample(i, ids, text, truncated=text.endswith("..."), num_tokens=len(ids)))
        self.offset += len(prompt_ids)
        return out


def test_evaluate_with_known_answers(smol_tokenizer):
    examples = [Example("a", "1+1?", answer="2"), Example("b", "half of 1?", answer="1/2"),
                Example("c", "3*3?", answer="9")]
    texts = [["<think>Wait, hmm.</think> \\boxed{2}", "\\boxed{3}", "\\boxed{2}"],
             ["Perhaps \\boxed{0.5}", "\\boxed{\\frac{1}{2}}", "\\boxed{7}"],
             ["I might check...", "\\boxed{8}", "\\boxed{8}"]]
    backend = ScriptedBackend(smol_tokenizer, texts)
    seen = []
    renderer = Renderer(smol_tokenizer, ContextConfig(max_length=2048))
    summary, rows = evaluate(None, smol_tokenizer, examples, k=3, pass_ks=[1, 2, 3], benchmark="toy",
                             params=SamplingParams(seed=5, max_new_tokens=8), renderer=renderer,
                             problems_per_batch=2, backend=backend, on_sample=seen.append, progress=False)
    assert [r["correct"] for r in rows] == [True, False, True, True, True, False, False, False, False]
    assert rows[3]["pred"] == "0.5" and rows[6]["pred"] is None
    assert [(n, p.n, p.seed) for n, p in backend.calls] == [(2, 3, 5), (1, 3, 6)]  # chunk seeds
    assert seen == rows
    assert summary["avg@3"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert summary["pass@1"] == pytest.approx(summary["avg@3"])
    assert summary["pass@2"] == pytest.approx((1 + 1 + 0) / 3)
    # maj: a -> "2" (2 votes) correct; b -> three distinct answers, first ("0.5") correct; c -> "8" wrong
    assert summary["maj@3"] == pytest.approx(2 / 3)
    assert summary["truncation_rate"] == pytest.approx(1 / 9)
    assert rows[0]["thinking_tokens"] > 0 and rows[1]["thinking_tokens"] == 0
    assert rows[0]["markers_word"]["total"] == 2 and rows[6]["markers_word"]["total"] == 2
    assert summary["sampling"]["seed"] == 5 and summary["sampling"]["k"] == 3
    assert "1+1?" in summary["prompt_example"]


def test_evaluate_rejects_bad_input(smol_tokenizer):
    renderer = Renderer(smol_tokenizer, ContextConfig(max_length=2048))
    with pytest.raises(ValueError, match="no gold answer"):
        evaluate(None, smol_tokenizer, [Example("x", "q")], k=1, params=SamplingParams(),
                 renderer=renderer, backend=ScriptedBackend(smol_tokenizer, [["a"]]), progress=False)
    with pytest.raises(ValueError, match="raise --k"):
        evaluate(None, smol_tokenizer, [Example("x", "q", answer="1")], k=2, pass_ks=[4],
                 params=SamplingParams(), renderer=renderer, progress=False)


def test_eval_cli_tiny_random(tmp_path, capsys):
    torch.manual_seed(0)
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps({"id": f"t{i}", "problem": f"What is {i}+{i}?", "answer": str(2 * i)})
                            + "\n" for i in range(2)))
    out = tmp_path / "ev"
    code = main(["eval", "--model", "tiny-random", "--benchmarks", f"{data},rg:chain_sum", "--k", "2",
                 "--pass-k", "1,2", "--max-new-tokens", "6", "--limit", "2", "--output-dir", str(out),
                 "--no-progress"])
    assert code == 0
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {r["benchmark"] for r in rows} == {"toy", "rg:chain_sum"}
    expected = {"model", "benchmark", "problem_id", "sample_index", "prompt", "response", "pred", "gold",
                "correct", "num_tokens", "thinking_tokens", "truncated", "markers_word",
                "markers_paper", "sampling"}
    assert set(rows[0]) == expected
    assert all(r["num_tokens"] <= 6 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["toy"]["samples_per_problem"] == 2 and "pass@2" in summary["toy"]
    assert summary["toy"]["sampling"]["max_new_tokens"] == 6
    assert "| toy |" in (out / "summary.md").read_text()
    assert "| rg:chain_sum |" in capsys.readouterr().out


def test_eval_cli_arg_errors(tmp_path, capsys):
    assert main(["eval", "--model", "tiny-random", "--benchmarks", "x", "--k", "2", "--pass-k", "4",
                 "--output-dir", str(tmp_path)]) == 2
    assert "--pass-k [4]" in capsys.readouterr().err
