"""Generation backends behind one interface (``RolloutBackend``): HF ``generate`` and vLLM.

``make_backend(name, model, tokenizer, **options)`` builds one by its config name
(``rollout.backend``). A backend that keeps its own copy of the weights (vLLM) also has
``load_policy(model)``, which the trainer calls after every optimizer step.
"""

from selfdistill.rollout.hf_generate import HFGenerate
from selfdistill.rollout.types import RolloutBackend, Sample, SamplingParams

BACKENDS = ("hf", "vllm")


def make_backend(name: str, model, tokenizer, **options) -> RolloutBackend:
    """The rollout backend called ``name`` (``hf`` or ``vllm``) generating with ``model``'s weights.

    ``options`` are the backend's own keyword arguments (vllm: ``gpu_memory_utilization``, ``sleep``,
    ``dtype``, ``device``); the HF backend takes none of them.
    """
    if name == "hf":
        return HFGenerate(model, tokenizer)
    if name == "vllm":
        try:
            from selfdistill.rollout.vllm_backend import VLLMGenerate
        except ImportError as err:
            raise ImportError(
                f"rollout.backend=vllm needs vLLM ({err}); install it with `pip install 'selfdistill[vllm]'` "
                "or `scripts/setup.sh --vllm`, or use rollout.backend=hf") from None
        return VLLMGenerate(model, tokenizer, **options)
    raise ValueError(f"rollout backend {name!r}: choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "HFGenerate", "RolloutBackend", "Sample", "SamplingParams", "make_backend"]
