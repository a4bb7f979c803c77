"""Shared helpers of the reliability tests: a model loader that must not be called, CLI capture."""

from __future__ import annotations

import pytest


class ModelLoaded(BaseException):
    """Raised by the guarded loader; a BaseException so no `except Exception` can swallow it."""


def forbid_model_loading(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every model loader raise ModelLoaded; returns the list of names it was asked for."""
    import selfdistill.models as models
    import selfdistill.models.loading as loading

    calls: list[str] = []

    def guarded(name, *args, **kwargs):
        calls.append(str(name))
        raise ModelLoaded(f"the model loader was called for {name!r}")

    monkeypatch.setattr(models, "load_model", guarded)
    monkeypatch.setattr(loading, "load_model", guarded)
    return calls


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """``selfdistill ARGV`` in this process: (exit code, stdout, stderr)."""
    from selfdistill.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
