"""dtype=auto and device=auto: the choice per CPU capability and GPU kind (monkeypatched, so the
suite checks every branch on whatever CPU it runs), explicit dtypes and their warnings."""

from __future__ import annotations

import warnings

import pytest
import torch

from selfdistill import hardware


@pytest.fixture
def cpu(monkeypatch):
    """A CPU whose capability, oneDNN answer and flags the test sets."""

    def make(capability: str, onednn: bool, flags: set[str] | None):
        monkeypatch.setattr(hardware, "cpu_capability", lambda: capability)
        monkeypatch.setattr(hardware, "_onednn_bf16", lambda: onednn)
        monkeypatch.setattr(hardware, "_cpu_flags", lambda: flags)
        for name in hardware.ISA_CAP_VARIABLES:  # a run under emulation must not leak into these
            monkeypatch.delenv(name, raising=False)

    return make


@pytest.mark.parametrize("capability,onednn,flags,want", [
    ("AVX2", False, {"avx2", "fma"}, "float32"),  # AMD Zen 2/3, most laptops
    ("AVX512", True, {"avx512f", "avx512_bf16"}, "bfloat16"),  # Zen 4, Cooper Lake
    ("AVX512", True, {"avx512f", "amx_bf16"}, "bfloat16"),  # Sapphire Rapids
    ("AVX512", True, {"avx512f", "avx512bw"}, "float32"),  # Skylake: oneDNN says yes, emulated
    ("AVX2", True, {"avx512f", "avx512_bf16"}, "float32"),  # ATEN_CPU_CAPABILITY=avx2
])
def test_auto_dtype_on_a_cpu_follows_native_bf16(cpu, capability, onednn, flags, want):
    cpu(capability, onednn, flags)
    hw = hardware.resolve("auto", "cpu")
    assert hw.dtype == want and hw.device == "cpu" and hw.cpu_capability == capability
    assert hw.native_bf16 == (want == "bfloat16")
    assert ("natively" in hw.reason) == (want == "bfloat16") and hw.warning == ""


def test_onednn_isa_cap_counts_as_no_native_bf16(cpu, monkeypatch):
    cpu("AVX512", True, {"avx512_bf16"})
    assert hardware.resolve("auto", "cpu").dtype == "bfloat16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert hardware.resolve("auto", "cpu").dtype == "float32"


def test_explicit_dtype_wins_and_warns_when_emulated(cpu):
    cpu("AVX2", False, {"avx2"})
    with pytest.warns(hardware.EmulatedPrecisionWarning, match="emulated"):
        hw = hardware.resolve("bfloat16", "cpu")
    assert hw.dtype == "bfloat16" and "emulated" in hw.warning and hw.reason == "asked for explicitly"
    cpu("AVX512", True, {"avx512_bf16"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hardware.resolve("bfloat16", "cpu").warning == ""
        assert hardware.resolve("float32", "cpu").dtype == "float32"


@pytest.mark.parametrize("bf16,want", [(True, "bfloat16"), (False, "float16")])
def test_auto_on_cuda_is_bf16_where_supported_else_fp16(monkeypatch, bf16, want):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Fake GPU")
    assert hardware.resolve_device("auto") == torch.device("cuda", 0)
    hw = hardware.resolve("auto", "auto")
    assert (hw.device, hw.dtype, hw.processor) == ("cuda:0", want, "Fake GPU")
    assert hardware.resolve("auto", "cuda:1").device == "cuda:1"
    with pytest.raises(ValueError, match="only 2 CUDA"):
        hardware.resolve_device("cuda:5")


def test_bad_names_and_missing_cuda_are_clear_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hardware.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA device"):
        hardware.resolve_device("cuda")
    with pytest.raises(ValueError, match="not a device name"):
        hardware.resolve_device("gpu0")
    with pytest.raises(ValueError, match="use one of auto"):
        hardware.resolve("float8")


def test_describe_records_the_machine():
    record = hardware.resolve("float32", "cpu").describe()
    for key in ("device", "dtype", "reason", "processor", "cpu_capability", "native_bf16", "threads", "torch"):
        assert key in record
    assert record["cpu_capability"] == str(torch.backends.cpu.get_cpu_capability())


def test_load_model_auto_dtype_uses_the_hardware_choice(cpu):
    from selfdistill.models import load_model

    cpu("AVX2", False, {"avx2"})
    model, _ = load_model("tiny-random", dtype="auto", device="cpu")
    assert next(model.parameters()).dtype == torch.float32
    cpu("AVX512", True, {"avx512_bf16"})
    model, _ = load_model("tiny-random", dtype="auto", device="cpu")
    assert next(model.parameters()).dtype == torch.bfloat16


def test_every_recipe_and_command_defaults_to_auto():
    """No default pins bf16: on an AVX2 CPU that is emulated and a recipe would crawl."""
    import argparse

    from selfdistill.cli import demo as demo_cli
    from selfdistill.train.config import TINY_MODELS, load_config, recipe_names

    for name in recipe_names():
        cfg = load_config(name)
        if cfg.model.name not in TINY_MODELS:
            assert cfg.model.dtype == "auto" and cfg.runtime.device == "auto", name
    parser = argparse.ArgumentParser()
    demo_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["demo"])
    assert (args.dtype, args.device) == ("auto", "auto")


def test_isa_caps_are_recorded_and_named_in_the_line(cpu, monkeypatch):
    cpu("AVX2", False, {"avx512_bf16"})
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    hw = hardware.resolve("auto", "cpu")
    assert hw.describe()["isa_caps"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert "capped by ONEDNN_MAX_CPU_ISA=AVX2" in hw.line()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert hardware.resolve("auto", "cpu").describe()["isa_caps"] == {}
