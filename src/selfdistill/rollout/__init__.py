"""Generation backends behind one interface (``RolloutBackend``); HF ``generate`` for now."""

from selfdistill.rollout.hf_generate import HFGenerate
from selfdistill.rollout.types import RolloutBackend, Sample, SamplingParams

__all__ = ["HFGenerate", "RolloutBackend", "Sample", "SamplingParams"]
