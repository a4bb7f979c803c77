"""Device and dtype flow through eval, analyze, SFT and studies. No GPU here: a fake CUDA
(torch.cuda patched) checks that ``auto`` reaches the loaders as ``cuda:0``, and a model whose
parameters live on the ``meta`` device checks that analysis passes move their inputs to it."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import selfdistill.models as models
from selfdistill.cli import main
from selfdistill.contexts import ContextConfig, Renderer
from selfdistill.types import Example


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch reports one bf16-capable CUDA device; model loading is recorded and stays on the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    calls: list[dict] = []
    real = models.load_model

    def load(name, **kw):
        calls.append({"name": str(name), **kw})
        return real(name, dtype="float32")  # CPU, whatever was asked

    monkeypatch.setattr(models, "load_model", load)
    return calls


def test_eval_auto_picks_the_gpu_and_records_it(fake_cuda, tmp_path, capsys):
    code = main(["eval", "--model", "tiny-random", "--benchmarks", "gsm8k-100", "--limit", "1", "--k", "1",
                 "--max-new-tokens", "3", "--no-progress", "--output-dir", str(tmp_path)])
    assert code == 0
    assert [(c["device"], c["dtype"]) for c in fake_cuda] == [("cuda:0", "bfloat16")]
    hw = json.loads((tmp_path / "summary.json").read_text())["gsm8k-100"]["hardware"]
    assert hw["device"] == "cuda:0" and hw["dtype"] == "bfloat16" and hw["processor"] == "Fake GPU"
    assert "Hardware: device cuda:0 (Fake GPU" in (tmp_path / "summary.md").read_text()
    assert capsys.readouterr().err.count("selfdistill eval: device cuda:0") == 1


def test_eval_explicit_device_and_dtype_win(fake_cuda, tmp_path):
    assert main(["eval", "--model", "tiny-random", "--benchmarks", "gsm8k-100", "--limit", "1", "--k", "1",
                 "--max-new-tokens", "2", "--no-progress", "--device", "cpu", "--dtype", "float32",
                 "--output-dir", str(tmp_path)]) == 0
    assert [(c["device"], c["dtype"]) for c in fake_cuda] == [("cpu", "float32")]


def test_eval_refuses_a_device_that_is_not_here(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["eval", "--model", "tiny-random", "--benchmarks", "gsm8k-100", "--device", "cuda",
                 "--output-dir", str(tmp_path)]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err


def test_analyze_token_kl_loads_on_the_device_and_records_it(fake_cuda, tmp_path, capsys):
    code = main(["analyze", "token-kl", "--model", "tiny-random", "--data", "gsm8k-100", "--limit", "2",
                 "--max-new-tokens", "4", "--output-dir", str(tmp_path)])
    assert code == 0
    assert [(c["device"], c["dtype"]) for c in fake_cuda] == [("cuda:0", "bfloat16")]
    assert json.loads((tmp_path / "hardware.json").read_text())["device"] == "cuda:0"


def test_sft_and_studies_pass_the_device(fake_cuda, tmp_path):
    from selfdistill.studies.grid import COMMON_CPU
    from selfdistill.studies.jobs import common_overrides, load_eval_model
    from selfdistill.train.sft import SFTConfig, train_sft

    train_sft([([5, 6, 7], [8, 9])], SFTConfig(model="tiny-random", output_dir=str(tmp_path / "sft")))
    assert (fake_cuda[-1]["device"], fake_cuda[-1]["dtype"]) == ("cuda:0", "bfloat16")
    assert json.loads((tmp_path / "sft" / "hardware.json").read_text())["device"] == "cuda:0"
    s = dict(COMMON_CPU)
    assert s["dtype"] == "auto" and s["device"] == "auto"
    load_eval_model("tiny-random", {**s, "device": "cpu"})
    assert (fake_cuda[-1]["device"], fake_cuda[-1]["dtype"]) == ("cpu", "auto")
    overrides = common_overrides({**s, "device": "cpu"}, tmp_path, max_steps=1, resume=False)
    assert "device=cpu" in overrides and "model.dtype=auto" in overrides
    assert "device=auto" in common_overrides({**s, "device": "cuda:0"}, tmp_path, max_steps=1, resume=False)


class _OnMeta(nn.Module):
    """Stands in for a model on an accelerator: its only parameter is on ``meta``."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1, device="meta"))


def test_analysis_passes_move_inputs_to_the_model_device(smol_tokenizer, monkeypatch):
    from selfdistill.analysis import controls, token_kl

    seen: list[torch.device] = []

    def fake_logits(model, inputs):
        seen.extend({inputs.ids_B_L.device, inputs.attention_mask_B_L.device, inputs.position_ids_B_L.device})
        return torch.randn(1, inputs.T, 11)  # computed "on the device", handed back

    monkeypatch.setattr(token_kl, "response_logits", fake_logits)
    renderer = Renderer(smol_tokenizer, ContextConfig(max_length=512))
    examples = [Example(f"p{i}", f"What is {i}+1?", solution=f"{i}+1={i + 1}", answer=str(i + 1))
                for i in range(2)]
    ids = [smol_tokenizer.encode(" It is 3", add_special_tokens=False)] * 2
    scores = token_kl.score_tokens(_OnMeta(), smol_tokenizer, renderer, examples, ids)
    assert seen and set(seen) == {torch.device("meta")}
    assert scores.kl_N.device.type == "cpu" and scores.kl_N.numel() == 2 * len(ids[0])
    seen.clear()
    out = controls.score_controls(_OnMeta(), renderer, examples, ids, seed=0)
    assert set(seen) == {torch.device("meta")}
    assert out.per_condition["matched"]["cos_total_ref"].device.type == "cpu"
