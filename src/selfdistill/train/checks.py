"""Configuration checks: everything that can be rejected before a model loads.

``validate`` needs only the config; ``validate_examples`` runs after the data loads (still before
the model); ``validate_vocab`` once the vocabulary size is known; ``check_world`` once the number
of processes is known. Messages name the key and the fix.
"""

from __future__ import annotations

import dataclasses
import typing

from selfdistill import methods

from .errors import ConfigError

if typing.TYPE_CHECKING:  # config imports this module (load_config validates), not the reverse
    from .config import TrainConfig


def _sections(cfg: TrainConfig) -> dict[str, object]:
    """name -> section object (the dataclass-valued fields of the config)."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if dataclasses.is_dataclass(getattr(cfg, f.name))}


def validate(cfg: TrainConfig) -> None:
    """Reject impossible configurations before any model is loaded. Raises ConfigError."""
    errors: list[str] = []
    for name, section in [("", cfg), *_sections(cfg).items()]:
        prefix = f"{name}." if name else ""
        for f in dataclasses.fields(section):
            choices = f.metadata.get("choices")
            if section is cfg.method and f.name == "name":  # the table itself, not a copy of its names
                choices = tuple(methods.METHODS)
            value = getattr(section, f.name)
            if choices and value not in choices:
                errors.append(f"{prefix}{f.name}={value!r} is not valid; choose one of {', '.join(choices)}")
    m, s, o, sch = cfg.method, cfg.sampling, cfg.objective, cfg.schedule

    def need(cond: bool, msg: str) -> None:
        if not cond:
            errors.append(msg)

    need(cfg.model.length_multiple >= 1,
         f"model.length_multiple must be >= 1 (1 = no padding), got {cfg.model.length_multiple}")
    need(s.rollouts_per_prompt >= 1, "sampling.rollouts_per_prompt must be >= 1")
    need(s.max_new_tokens >= 1, "sampling.max_new_tokens must be >= 1")
    need(s.temperature >= 0, "sampling.temperature must be >= 0 (0 = greedy)")
    need(0 < s.top_p <= 1, "sampling.top_p must be in (0, 1]")
    need(s.top_k >= 0, "sampling.top_k must be >= 0 (0 = off)")
    need(0 <= o.beta <= 1, f"objective.beta must be in [0, 1], got {o.beta}")
    need(o.temperature > 0, "objective.temperature (tau) must be > 0")
    need(o.token_clip is None or o.token_clip > 0, "objective.token_clip must be > 0 or null")
    need(o.topk >= 1, "objective.topk must be >= 1")
    need(o.purified_beta > 0, "objective.purified_beta must be > 0")
    need(o.purified_clip > 0, "objective.purified_clip must be > 0")
    need(0 <= o.eps_low < 1 and o.eps_high >= 0, "objective.eps_low must be in [0, 1), eps_high >= 0")
    need(o.loss_chunk_size >= 0, "objective.loss_chunk_size must be >= 0 (0 = unchunked)")
    need(o.kl_coef >= 0, f"objective.kl_coef must be >= 0 (0 = no KL term), got {o.kl_coef}")
    need(o.overlong_buffer >= 0, f"objective.overlong_buffer must be >= 0 (0 = off), got {o.overlong_buffer}")
    need(o.overlong_buffer < s.max_new_tokens, f"objective.overlong_buffer={o.overlong_buffer} must be below "
         f"sampling.max_new_tokens={s.max_new_tokens}: lower the buffer or raise max_new_tokens")
    need(o.overlong_penalty >= 0, f"objective.overlong_penalty must be >= 0, got {o.overlong_penalty}")
    need(o.is_clip >= 1, f"objective.is_clip must be >= 1 (a weight clipped below 1 down-weights fresh "
         f"rollouts), got {o.is_clip}")
    need(0 <= o.hybrid_lambda <= 1, f"objective.hybrid_lambda must be in [0, 1], got {o.hybrid_lambda}")
    need(s.max_sampling_batches >= 1, f"sampling.max_sampling_batches must be >= 1, got {s.max_sampling_batches}")
    need(sch.ppo_epochs >= 1, f"schedule.ppo_epochs must be >= 1, got {sch.ppo_epochs}")
    need(sch.mini_batches >= 1 and sch.prompts_per_step % max(sch.mini_batches, 1) == 0,
         f"schedule.mini_batches={sch.mini_batches} must be >= 1 and divide schedule.prompts_per_step="
         f"{sch.prompts_per_step} (mini-batches hold whole groups)")
    need(0 < m.ema_rate <= 1, "method.ema_rate must be in (0, 1]")
    need(0 <= m.trust_region_mix <= 1, "method.trust_region_mix must be in [0, 1]")
    need(cfg.diagnostics.controls_every >= 0,
         f"diagnostics.controls_every must be >= 0 (0 = off), got {cfg.diagnostics.controls_every}")
    if m.name in methods.METHODS:
        errors += _method_errors(cfg)
    need(cfg.optimizer.lr > 0, "optimizer.lr must be > 0")
    need(cfg.optimizer.max_grad_norm >= 0, "optimizer.max_grad_norm must be >= 0 (0 = off)")
    need(sch.max_steps >= 1, "schedule.max_steps must be >= 1")
    need(sch.prompts_per_step >= 1, "schedule.prompts_per_step must be >= 1")
    need(sch.micro_batch_size >= 1, "schedule.micro_batch_size must be >= 1")
    need(sch.warmup_steps >= 0, "schedule.warmup_steps must be >= 0")
    need(sch.max_nonfinite_steps >= 1, "schedule.max_nonfinite_steps must be >= 1")
    need(0 <= sch.min_lr_ratio <= 1, "schedule.min_lr_ratio must be in [0, 1]")
    need(cfg.checkpoint.every >= 1, "checkpoint.every must be >= 1")
    need(cfg.checkpoint.keep_last >= 1, "checkpoint.keep_last must be >= 1")
    need(cfg.lora.r >= 1 and cfg.lora.alpha > 0, "lora.r must be >= 1 and lora.alpha > 0")
    ev = cfg.eval
    need(ev.every >= 0, f"eval.every must be >= 0 (0 = off), got {ev.every}")
    if ev.every:
        need(bool(ev.data), "eval.every > 0 needs eval.data: held-out problems with answers, e.g. "
             "eval.data=gsm8k-100 or a local jsonl")
    need(ev.limit >= 1 and ev.k >= 1 and ev.problems_per_batch >= 1,
         "eval.limit, eval.k and eval.problems_per_batch must be >= 1")
    need(ev.max_new_tokens is None or ev.max_new_tokens >= 1, "eval.max_new_tokens must be >= 1 or null")
    need(ev.temperature >= 0 and 0 < ev.top_p <= 1 and ev.top_k >= 0,
         "eval.temperature must be >= 0, eval.top_p in (0, 1], eval.top_k >= 0")
    if cfg.contexts:
        errors += _context_errors(cfg.contexts)
    if errors:
        raise ConfigError("invalid training config:\n  - " + "\n  - ".join(errors))


def _method_errors(cfg: TrainConfig) -> list[str]:
    """What the method's record (``selfdistill.methods``) refuses: a modifier it does not take, a
    teacher it does not accept, a group of one, diagnostics it does not log, and any
    method-dependent key set away from its default that the method does not read."""
    m = cfg.method
    errors = []
    for modifier in methods.MODIFIERS.values():
        if getattr(m, modifier.flag.split(".", 1)[1]) and m.name not in modifier.applies_to:
            errors.append(f"{modifier.flag} modifies {modifier.changes}: use it with method="
                          f"{' or '.join(modifier.applies_to)}")
            return errors
    method = methods.of(m)
    if method.groups and cfg.sampling.rollouts_per_prompt < 2:
        errors.append(f"method {m.name} compares rollouts within a group: set sampling.rollouts_per_prompt "
                      f">= 2 (the recipe uses 8), got {cfg.sampling.rollouts_per_prompt}")
    if m.teacher not in method.teachers:
        why = ("has no teacher: leave method.teacher=fixed" if method.teacher_context is None else
               "scores all its contexts with the frozen initial weights: method.teacher must be "
               + " or ".join(method.teachers))
        errors.append(f"{m.name} {why}, got {m.teacher}")
        return errors  # the teacher key would be reported again below
    if cfg.diagnostics.controls_every and not methods.diagnostics_on(method, cfg.diagnostics.pmi):
        errors.append("diagnostics.controls_every needs the diagnostics: use method=purified-opsd, or method=opsd "
                      "with diagnostics.pmi=true")
    o = cfg.objective
    if method.hybrid and not methods.takes_pg(method, o.hybrid_lambda):
        # the KL term and the overlong shaping act on the policy-gradient term, off at lambda 0
        for key, on in (("objective.kl_coef", o.kl_coef > 0), ("objective.overlong_buffer", o.overlong_buffer > 0)):
            if on:
                errors.append(f"{key} acts on the policy-gradient term, which method {method.name} adds only "
                              "with objective.hybrid_lambda > 0: set hybrid_lambda or remove the key")
    errors += [f"{key}={value!r} is not read by method {method.name}: remove it (or choose a method that "
               f"reads it: {', '.join(readers)})" for key, value, readers in ignored_keys(cfg, method)]
    return errors


def ignored_keys(cfg: TrainConfig, method: methods.Method) -> list[tuple[str, object, list[str]]]:
    """(key, value, methods that read it) for every method-dependent key (``methods.GOVERNED_KEYS``)
    whose value differs from its default although ``method`` does not read it."""
    defaults = type(cfg)()
    out = []
    for key in sorted(methods.GOVERNED_KEYS - method.keys):
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value != getattr(getattr(defaults, section), name):
            readers = [n for n, rec in methods.METHODS.items() if key in rec.keys] or [
                f"{mod.applies_to[0]} with {mod.flag}=true" for mod in methods.MODIFIERS.values()]
            out.append((key, value, readers))
    return out


def _context_errors(options: dict) -> list[str]:
    try:
        from selfdistill.contexts import ContextConfig
    except ImportError:
        return []
    names = {f.name for f in dataclasses.fields(ContextConfig)}
    return [
        f"contexts.{k} is not a ContextConfig option; valid: {', '.join(sorted(names))}"
        for k in options
        if k not in names
    ]


def check_world(cfg: TrainConfig, num_processes: int) -> None:
    """The global batch must split evenly over processes."""
    if cfg.schedule.prompts_per_step % num_processes:
        raise ConfigError(
            f"schedule.prompts_per_step={cfg.schedule.prompts_per_step} must be divisible by the "
            f"number of processes ({num_processes})"
        )


def validate_examples(cfg: TrainConfig, examples: typing.Sequence) -> None:
    """Checks that need the data (run after loading it, before the model loads)."""
    if not examples:
        raise ConfigError(f"data.spec={cfg.data.spec!r} gave no examples")
    name = cfg.method.name
    method = methods.of(cfg.method)
    if method.needs_solution or methods.diagnostics_on(method, cfg.diagnostics.pmi):
        missing = [getattr(e, "origin", "") or e.id for e in examples if not e.solution]
        if missing:
            raise ConfigError(
                f"method {name} needs a reference solution for every example; "
                f"{len(missing)} of {len(examples)} have none (first: {', '.join(missing[:3])}). "
                "Map a solution column (data docs) or use a method that needs no reference (sdpo, grpo, srpo)."
            )
    if method.needs_answer:
        missing = [getattr(e, "origin", "") or e.id for e in examples if not e.answer]
        if missing:
            raise ConfigError(
                f"method {name} rewards rollouts against a gold answer; {len(missing)} of "
                f"{len(examples)} examples have none (first: {', '.join(missing[:3])})"
            )


def validate_vocab(cfg: TrainConfig, vocab_size: int) -> None:
    """Checks that need the vocabulary size (run once the tokenizer/model config is known)."""
    o = cfg.objective
    if o.support != "full" and o.topk > vocab_size:
        raise ConfigError(
            f"objective.topk={o.topk} is larger than the vocabulary ({vocab_size}); "
            f"set objective.topk <= {vocab_size} or objective.support=full"
        )
