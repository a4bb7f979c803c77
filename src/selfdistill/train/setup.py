"""Build the parts a run needs, in the order that fails fastest: config checks, data, model.

Nothing here trains. Each function takes the config and returns one part, so a reader sees
exactly where every object of the loop comes from.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .checks import check_world, validate, validate_examples, validate_vocab
from .config import ConfigError, TrainConfig

log = logging.getLogger(__name__)


@dataclass
class Data:
    examples: list
    skipped_rows: int


def load_data(cfg: TrainConfig) -> Data:
    """Examples for the method (DataError names bad rows), checked before any model loads."""
    from selfdistill.data import load_with_report

    d = cfg.data
    result = load_with_report(d.spec, split=d.split, columns=d.columns or None, limit=d.limit,
                              seed=d.data_seed, method=cfg.method.name, on_bad_rows=d.on_bad_rows,
                              syntax="train")
    for warning in result.warnings:
        log.warning("data %s: %s", result.source, warning)
    validate_examples(cfg, result.examples)
    skipped = len({e.row for e in result.skipped})
    if skipped:
        log.warning("skipped %d bad rows of %s", skipped, result.source)
    return Data(result.examples, skipped)


def context_config(options: dict, *, model=None):
    """``contexts`` section -> ContextConfig (``roles`` entries become RoleOptions).

    Without ``max_length`` the model's ``max_position_embeddings`` is the limit of
    prompt + response tokens (the renderer never truncates; see contexts.over_length).
    """
    from selfdistill.contexts import ContextConfig, RoleOptions

    options = dict(options)
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if options.get("max_length") is None and limit:
        options["max_length"] = int(limit)
    roles = options.pop("roles", None) or {}
    if not isinstance(roles, dict) or not all(isinstance(v, dict) for v in roles.values()):
        raise ConfigError("contexts.roles must map a role to its options, e.g. "
                          f"{{student: {{enable_thinking: true}}}}; got {roles!r}")
    try:
        return ContextConfig(roles={k: RoleOptions(**v) for k, v in roles.items()}, **options)
    except TypeError as err:
        raise ConfigError(f"contexts: {err}") from None


def config_vocab_size(name: str, *, trust_remote_code: bool = False) -> int | None:
    """The vocabulary size in the model's config.json (no weights read), or None when the config
    cannot be read here (the model load then reports why)."""
    from transformers import AutoConfig

    from selfdistill.models.aliases import ALIASES, alias_path

    try:
        source = alias_path(name) if name in ALIASES else name
        config = AutoConfig.from_pretrained(str(source), trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return None
    config = getattr(config, "text_config", None) or config
    vocab = getattr(config, "vocab_size", None)
    return int(vocab) if isinstance(vocab, int) and vocab > 0 else None


def load_policy(cfg: TrainConfig, hardware=None):
    """(model, tokenizer): loaded on ``hardware``'s device and dtype (a ``selfdistill.hardware.Hardware``;
    None: resolved from ``model.dtype`` for the CPU), vocabulary-checked, LoRA-wrapped when enabled."""
    from selfdistill.hardware import resolve

    from selfdistill.models import LoraSettings, apply_lora, load_model

    m = cfg.model
    hardware = hardware or resolve(m.dtype, "cpu")
    vocab = config_vocab_size(m.name, trust_remote_code=m.trust_remote_code)
    if vocab is not None:  # reject top-k > vocabulary before the weights load
        validate_vocab(cfg, vocab)
    model, tokenizer = load_model(m.name, dtype=hardware.dtype, trust_remote_code=m.trust_remote_code,
                                  gradient_checkpointing=m.gradient_checkpointing,
                                  length_multiple=m.length_multiple, device=hardware.device)
    from selfdistill.models import output_layer

    # the real output rows; and a model whose logits this layer cannot reproduce fails now
    validate_vocab(cfg, output_layer(model).weight_V_H.shape[0])
    if cfg.lora.enabled:
        lo = cfg.lora
        model = apply_lora(model, LoraSettings(r=lo.r, alpha=lo.alpha, dropout=lo.dropout,
                                               target_modules=tuple(lo.target_modules),
                                               mixed_precision=lo.mixed_precision))
    return model, tokenizer


def teachers(cfg: TrainConfig, model, method=None):
    """(teacher handle or None, frozen-base handle or None, live handle or None) for the method's
    record (``selfdistill.methods``; default: the one ``cfg.method`` selects)."""
    from selfdistill import methods
    from selfdistill.models import make_teacher

    m = cfg.method
    method = method or methods.of(m)
    teacher = make_teacher(model, m.teacher, rate=m.ema_rate, r=m.trust_region_mix) if method.teacher_context else None
    base = None
    if method.base_roles or methods.diagnostics_on(method, cfg.diagnostics.pmi):
        base = teacher if m.teacher == "fixed" else make_teacher(model, "fixed")
    # trust_region mixes in the current weights; anti-sd scores the sibling context with them
    live = make_teacher(model, "live") if m.teacher == "trust_region" or method.context_scores else None
    return teacher, base, live


def check_output_dir(path: str) -> None:
    """Fail now, not after the model loads, when ``output_dir`` cannot be created or written.

    Probes the nearest existing folder with a temporary file, removed at once: nothing is created.
    """
    target = Path(path).absolute()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"output_dir={path} cannot be created: {existing} is a file, not a folder; "
                          "choose another output_dir")
    try:
        fd, probe = tempfile.mkstemp(prefix=".selfdistill-write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"output_dir={path} is not writable ({existing}: {err.strerror}); "
                          "choose a writable output_dir or fix its permissions") from None


def preflight(cfg: TrainConfig, num_processes: int) -> None:
    """Every check that needs neither data nor a model."""
    validate(cfg)
    check_world(cfg, num_processes)
    check_output_dir(cfg.output_dir)
