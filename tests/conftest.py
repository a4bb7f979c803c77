"""Shared fixtures. Tests run offline on tiny models and local files."""

from __future__ import annotations

import os

import pytest
import torch

# Keep tests light on a 2-core machine and deterministic.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def smol_tokenizer():
    """The real SmolLM2-135M-Instruct tokenizer with its chat template (converted once, cached)."""
    from selfdistill.models.offline import smollm2_tokenizer

    return smollm2_tokenizer()
