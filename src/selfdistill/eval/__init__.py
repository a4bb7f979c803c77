"""Evaluation: benchmark loaders, metrics (avg@k, pass@k, maj@k), and the eval runner.

The runner (``selfdistill.eval.runner.evaluate``) imports torch and the model stack; it is not
imported here so the metrics stay importable without them.
"""

from selfdistill.eval.metrics import (
    avg_at_k,
    maj_at_k,
    majority_vote,
    pass_at_k,
    summarize_samples,
    thinking_text,
)

__all__ = ["avg_at_k", "maj_at_k", "majority_vote", "pass_at_k", "summarize_samples", "thinking_text"]
