"""Pure tensor math of selfdistill: divergences, targets, diagnostics, policy-gradient pieces,
aggregation, the chunked loss path and the name registry. No model, tokenizer, I/O or globals.
See docs/objectives.md for the conventions."""

from .aggregate import aggregate, sequence_mean, token_mean
from .chunked import DistillLossOutput, chunked_distill_loss, direct_distill_loss, project
from .diagnostics import blank_decomposition, cosine, distribution_summary, pmi_diagnostics, top_share
from .divergences import (
    divergence_terms,
    forward_kl,
    generalized_jsd,
    restrict_support,
    reverse_kl,
    sdpo_alpha_to_beta,
)
from .policy import (
    GroupAdvantages,
    antisd_advantage,
    antisd_phi,
    clipped_pg_loss,
    group_advantages,
    k3_kl,
    overlong_penalty,
    pg_clip_binds,
    sdpo_importance_ratio,
    srpo_loss,
    srpo_route,
    teacher_entropy_weights,
)
from .registry import (
    DIVERGENCES,
    LOSSES,
    TARGETS,
    Registry,
    make_target_fn,
    register_divergence,
    register_loss,
    register_target,
)
from .targets import (
    log_probs,
    purified_delta,
    purified_target_logprobs,
    raw_target_logprobs,
    trust_region_logits,
)

__all__ = [
    "DIVERGENCES", "LOSSES", "TARGETS", "DistillLossOutput", "GroupAdvantages", "Registry",
    "aggregate", "antisd_advantage", "antisd_phi", "blank_decomposition", "chunked_distill_loss",
    "clipped_pg_loss", "cosine", "direct_distill_loss", "distribution_summary", "divergence_terms",
    "forward_kl", "generalized_jsd", "group_advantages", "k3_kl", "log_probs", "make_target_fn",
    "overlong_penalty", "pg_clip_binds", "pmi_diagnostics", "project", "purified_delta", "purified_target_logprobs",
    "raw_target_logprobs", "register_divergence", "register_loss", "register_target",
    "restrict_support", "reverse_kl", "sdpo_alpha_to_beta", "sdpo_importance_ratio",
    "sequence_mean", "srpo_loss", "srpo_route", "teacher_entropy_weights", "token_mean",
    "top_share", "trust_region_logits",
]
