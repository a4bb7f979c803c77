"""Model-running analyses on the tiny-random model: token-level KL (against a brute-force float64
reference), marker token detection, richness contexts, and both CLI commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from selfdistill.analysis.richness import parse_settings, richness
from selfdistill.analysis.token_kl import marker_tokens, score_tokens, variant_table
from selfdistill.cli import main
from selfdistill.contexts import ContextConfig, Renderer
from selfdistill.rollout import Sample, SamplingParams
from selfdistill.types import Example

EXAMPLES = [
    Example("p0", "What is 2+3?", solution="<think>add them</think>2+3=5, so \\boxed{5}.", answer="5"),
    Example("p1", "What is 4*2?", solution="4*2=8. \\boxed{8}", answer="8"),
]


@pytest.fixture(scope="module")
def tiny():
    from selfdistill.models import load_model

    torch.manual_seed(0)
    model, tokenizer = load_model("tiny-random")
    return model, tokenizer, Renderer(tokenizer, ContextConfig(max_length=2048))


def _png_ok(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, path


def test_marker_tokens_alignment():
    tokens = ["Hello", " Wa", "it", ",", " hmm", "...", "double", "-check", " checking", " might've"]
    assert marker_tokens(tokens) == ["", "wait", "", "", "hmm", "", "", "check", "", "might"]


def test_token_kl_matches_brute_force(tiny):
    model, tokenizer, renderer = tiny
    responses = ["Wait, 2+3 is 5. Let me check. \\boxed{5}", "Hmm maybe 8"]
    ids = [tokenizer(r, add_special_tokens=False)["input_ids"] for r in responses]
    scores = score_tokens(model, tokenizer, renderer, EXAMPLES, ids)
    assert scores.kl_N.numel() == sum(len(i) for i in ids)
    expected = []
    model.eval()
    with torch.no_grad():
        for ex, resp in zip(EXAMPLES, ids):
            lps = {}
            for role in ("student", "teacher"):
                prompt = renderer.prompt_ids(role, ex)
                logits = model(torch.tensor([prompt + resp])).logits[0].double()
                lps[role] = torch.log_softmax(logits[len(prompt) - 1 : len(prompt) - 1 + len(resp)], -1)
            expected.append((lps["student"].exp() * (lps["student"] - lps["teacher"])).sum(-1))
    torch.testing.assert_close(scores.kl_N, torch.cat(expected), atol=2e-4, rtol=1e-4)
    markers = [m for m in scores.marker_N if m]
    assert markers == ["wait", "check", "hmm", "maybe"]
    rows, corpus = variant_table(scores)
    assert corpus == pytest.approx(float(scores.kl_N.mean()))
    wait = next(r for r in rows if r["marker"] == "wait")
    i = scores.marker_N.index("wait")
    assert wait["mean_kl"] == pytest.approx(float(scores.kl_N[i]))
    assert wait["ratio_to_mean"] == pytest.approx(float(scores.kl_N[i]) / corpus)
    for key in ("cos_total_ref", "cos_total_it", "norm_ratio_ref_total", "kl_ratio_ref"):
        assert scores.per_position[key].shape == scores.kl_N.shape


class RecordingBackend:
    def __init__(self, tokenizer):
        self.tokenizer, self.prompts, self.calls = tokenizer, [], 0

    def generate(self, prompt_ids, params, *, batch_size=None):
        self.calls += 1
        out = []
        for i, p in enumerate(prompt_ids):
            self.prompts.append(self.tokenizer.decode(p))
            text = f"call {self.calls} wait \\boxed{{{5 if i == 0 else 7}}}"
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            out += [Sample(i, ids, text, False, len(ids))] * params.n
        return out


def test_richness_contexts(tiny, tmp_path):
    _, tokenizer, renderer = tiny
    backend = RecordingBackend(tokenizer)
    table, samples = richness(None, tokenizer, EXAMPLES, renderer=renderer, params=SamplingParams(seed=0),
                              output_dir=tmp_path, progress=False, backend=backend)
    assert [r["setting"] for r in table] == ["unguided", "full", "no_think", "regenerated"]
    unguided, full, no_think, regen = (backend.prompts[i:i + 2] for i in range(0, 8, 2))
    assert "Reference" not in unguided[0] and "What is 2+3?" in unguided[0]
    assert "<think>add them</think>" in full[0]
    assert "add them" not in no_think[0] and "2+3=5" in no_think[0]
    assert "call 2 wait" in regen[0] and "2+3=5" not in regen[0]  # the full-setting response
    assert all(r["score"] == pytest.approx(0.5) for r in table)  # p0 right (5), p1 wrong (7 vs 8)
    assert table[0]["E_word"] == 1.0
    assert {s["setting"] for s in samples} == set(parse_settings("full,regenerated,unguided,no_think"))
    _png_ok(tmp_path / "richness.png")
    assert (tmp_path / "richness.csv").exists() and (tmp_path / "richness_samples.jsonl").exists()
    with pytest.raises(ValueError, match="needs 'full'"):
        parse_settings("unguided,regenerated")


def _data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"id": e.id, "problem": e.problem, "solution": e.solution,
                                        "answer": e.answer}) + "\n" for e in EXAMPLES))
    return path


def test_token_kl_cli_with_samples(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"problem_id": pid, "response": text}) + "\n" for pid, text in [
        ("p0", "Wait, maybe 5. Let me check: 2+3=5. \\boxed{5}"), ("p1", "Hmm, perhaps 8. \\boxed{8}"),
        ("other", "ignored")]))
    out = tmp_path / "tk"
    assert main(["analyze", "token-kl", "--model", "tiny-random", "--data", str(_data_file(tmp_path)),
                 "--samples", str(samples), "--output-dir", str(out)]) == 0
    variants = list(csv.DictReader(open(out / "token_kl_variants.csv")))
    assert {r["marker"] for r in variants} == {"wait", "maybe", "check", "hmm", "perhaps"}
    diag = list(csv.DictReader(open(out / "token_kl_diagnostics.csv")))
    assert {r["tokens"] for r in diag} == {"all tokens", "marker tokens", "other tokens"}
    for name in ("token_kl_hist.png", "pmi_cosines_hist.png"):
        _png_ok(out / name)
    assert "corpus mean KL" in capsys.readouterr().out


def test_richness_cli_tiny_random(tmp_path):
    out = tmp_path / "rich"
    assert main(["analyze", "richness", "--model", "tiny-random", "--data", str(_data_file(tmp_path)),
                 "--max-new-tokens", "5", "--settings", "unguided,full", "--output-dir", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "richness.csv")))
    assert [r["setting"] for r in rows] == ["unguided", "full"]
    assert all(0 < float(r["mean_tokens"]) <= 5 for r in rows)
    _png_ok(out / "richness.png")
