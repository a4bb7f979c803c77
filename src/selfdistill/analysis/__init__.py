"""Analyses of reasoning traces: epistemic markers, word-frequency shift, information richness,
token-level student-teacher KL, training-run reports. Plots are written with matplotlib (Agg).

Only the pure, light helpers are exported here; the model-running experiments live in
``selfdistill.analysis.richness`` and ``selfdistill.analysis.token_kl``.
"""

from selfdistill.analysis.markers import (
    MARKERS,
    count_epistemic_markers,
    per_1k,
    rates_per_1k,
    sum_counts,
    words,
)

__all__ = ["MARKERS", "count_epistemic_markers", "per_1k", "rates_per_1k", "sum_counts", "words"]
