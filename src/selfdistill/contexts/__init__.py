"""One renderer for every role: chat-templated prompt ids and aligned scoring batches."""

from selfdistill.contexts.batch import (
    AlignmentError,
    Dropped,
    PromptBatch,
    ScoringBatch,
    check_alignment,
)
from selfdistill.contexts.config import (
    ROLES,
    THINK_BOUNDARIES,
    ContextConfig,
    ContextError,
    ContextLengthError,
    RoleOptions,
    ThinkBoundaryError,
)
from selfdistill.contexts.prompts import choose_siblings, strip_think
from selfdistill.contexts.render import Renderer

__all__ = [
    "ROLES",
    "THINK_BOUNDARIES",
    "AlignmentError",
    "ContextConfig",
    "ContextError",
    "ContextLengthError",
    "Dropped",
    "PromptBatch",
    "Renderer",
    "RoleOptions",
    "ScoringBatch",
    "ThinkBoundaryError",
    "check_alignment",
    "choose_siblings",
    "strip_think",
]
