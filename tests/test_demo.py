"""The demo end to end on tiny-random: every file of the report is written, reruns reuse phases."""

import json
from pathlib import Path

import pytest

from selfdistill.cli import main

pytestmark = pytest.mark.slow

REPORT_FILES = ["summary.md", "eval_table.md", "eval_table.csv", "eval_accuracy.png",
                "eval_markers.png", "training_curves.png", "timings.json",
                "samples_base.jsonl", "samples_opsd.jsonl", "samples_purified-opsd.jsonl"]


def _demo(out, *extra):
    return main(["demo", "--model", "tiny-random", "--steps", "2", "--problems", "3", "--samples", "2",
                 "--max-new-tokens", "6", "--prompts-per-step", "2", "--dtype", "float32",
                 "--no-progress", "--rollout-backend", "hf", "--output-dir", str(out), *extra])


def test_demo_writes_every_report_file_and_reuses_phases(tmp_path, capsys):
    out = tmp_path / "demo"
    assert _demo(out) == 0
    report = out / "report"
    for name in REPORT_FILES:
        path = report / name
        assert path.exists() and path.stat().st_size > 0, name
    summary = (report / "summary.md").read_text()
    for label in ("base", "OPSD", "Purified OPSD", "pmi/norm_ratio_ref_total", "standard error"):
        assert label in summary
    # the report names the precision and why (here the explicit --dtype float32)
    assert "in float32: asked for explicitly" in summary and "Ran on cpu (" in summary
    assert "transition text): `hardened` (the project's wording" in summary
    machine = json.loads((report / "timings.json").read_text())["hardware"]
    assert machine["dtype"] == "float32" and machine["cpu_capability"]
    samples = [json.loads(l) for l in (report / "samples_opsd.jsonl").read_text().splitlines()]
    assert len(samples) == 3 * 2 and {s["model"] for s in samples} == {"opsd"}
    for arm in ("opsd", "purified-opsd"):
        rows = (out / "runs" / arm / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(r)["step"] for r in rows] == [1, 2]
        assert "pmi/norm_ratio_ref_total" in json.loads(rows[-1])  # diagnostics for both arms
    assert "| base |" in capsys.readouterr().out

    first = json.loads((report / "timings.json").read_text())
    assert json.loads((out / "settings.json").read_text())["hardware"]["dtype"] == "float32"
    assert _demo(out) == 0  # second run: everything reused, nothing retrained
    text = capsys.readouterr().out
    assert text.count("reused") == 5
    assert json.loads((report / "timings.json").read_text())["train_opsd_s"] == first["train_opsd_s"]


def test_demo_auto_dtype_follows_the_hardware(tmp_path, monkeypatch, capsys):
    """Without --dtype the demo resolves auto: float32 on a CPU without native bf16, said at start."""
    from selfdistill import hardware
    from selfdistill.demo import pipeline

    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: False)
    seen = {}

    def stop_before_training(settings, arm, out):  # the overrides are all this test needs
        seen[arm] = settings.train_overrides(arm, out / "runs" / arm, False)
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "_train_arm", stop_before_training)
    with pytest.raises(SystemExit):
        main(["demo", "--model", "tiny-random", "--problems", "1", "--samples", "1", "--max-new-tokens", "2",
              "--no-progress", "--rollout-backend", "hf", "--output-dir", str(tmp_path / "d")])
    assert "float32: this CPU" in capsys.readouterr().out
    assert "model.dtype=auto" in seen["opsd"]
    settings = json.loads((tmp_path / "d" / "settings.json").read_text())
    assert settings["dtype"] == "auto" and settings["hardware"]["dtype"] == "float32"


def test_demo_rejects_bad_flags(tmp_path, capsys):
    assert main(["demo", "--steps", "0", "--output-dir", str(tmp_path)]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err


def test_demo_auto_backend_is_hf_without_vllm_and_the_report_says_so(tmp_path, monkeypatch):
    import importlib.util

    from selfdistill.demo import pipeline
    from selfdistill.hardware import resolve

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    settings = pipeline.DemoSettings(model="tiny-random")
    best, why = pipeline._faster_rollout_backend(settings, resolve("float32", "cpu"))
    assert best == "hf" and "vLLM is not installed" in why
    assert "rollout.backend=hf" in settings.train_overrides("opsd", Path("x"), resume=False)
    settings.rollout_backend = "vllm"
    assert "rollout.backend=vllm" in settings.train_overrides("opsd", Path("x"), resume=False)
    out = tmp_path / "auto"  # the whole demo with the default --rollout-backend auto
    assert main(["demo", "--model", "tiny-random", "--steps", "1", "--problems", "1", "--samples", "1",
                 "--max-new-tokens", "2", "--prompts-per-step", "2", "--dtype", "float32", "--no-progress",
                 "--output-dir", str(out)]) == 0
    assert "Rollouts with hf (vLLM is not installed" in (out / "report" / "summary.md").read_text()
