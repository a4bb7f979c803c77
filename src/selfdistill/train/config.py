"""Training configuration: dataclasses with help text, YAML recipes, ``key=value`` overrides.

A recipe is a YAML file whose top-level keys are the sections below, each named for what it
governs (``model``, ``lora``, ``data``, ``contexts``, ``sampling``, ``rollout``, ``method``,
``objective``, ``optimizer``, ``schedule``, ``checkpoint``, ``logging`` (where metrics go),
``rewards`` (how answers are read and scored), ``diagnostics`` (extra measurements),
``runtime`` (device and speed settings that never change the numbers), ``eval``) plus the global
keys ``output_dir``, ``seed``, ``resume``, ``resume_allow_changes`` and ``tiny_sizes``. Keys that
moved to a better section (``MOVED``) keep working under their old names, with a warning.
Overrides are ``dotted.key=value`` strings. Three shorthands keep command lines short:

- a section name with a scalar sets its primary field: ``model=tiny-random`` is
  ``model.name=tiny-random``, ``data=gsm8k-100`` is ``data.spec=...``, ``method=grpo`` is
  ``method.name=grpo``;
- a bare field name that exists in exactly one section resolves to it: ``max_steps=3`` is
  ``schedule.max_steps=3``; an ambiguous one (``temperature``) is refused with the candidates;
  the ``eval`` section is never reached this way (``eval.max_new_tokens=...``);
- values are parsed as YAML and then coerced to the field's declared type (``lr=5e-6`` is a float).

Everything here is checked before any model loads (:func:`validate`); the checks that need data
or a vocabulary live in :func:`validate_examples` and :func:`validate_vocab`.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import logging

import yaml

from .checks import validate  # checks never import config: no import circle
from .coerce import coerce
from .errors import ConfigError

log = logging.getLogger(__name__)

from selfdistill.methods import METHODS, TEACHERS


def _f(default: Any, help: str, choices: tuple | None = None, parse: Any = None, **kw: Any) -> Any:
    """A config field with its help text, optional choices and an optional ``parse(value)`` run on
    every value set (before the type check)."""
    meta: dict[str, Any] = {"help": help}
    if choices is not None:
        meta["choices"] = choices
    if parse is not None:
        meta["parse"] = parse
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass
class ModelConfig:
    name: str = _f("smollm2-135m", "hub id, local folder, or alias (tiny-random, smollm2-135m)")
    dtype: str = _f("auto", "weight dtype; auto = bfloat16 where the hardware computes it natively (CUDA "
                    "with bf16, CPUs with AVX-512 bf16 / AMX), float16 with loss scaling on older GPUs, "
                    "float32 otherwise", ("auto", "float32", "bfloat16", "float16"))
    trust_remote_code: bool = _f(False, "allow custom model code from the hub")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward to save memory")
    length_multiple: int = _f(32, "pad training and scoring passes on the right to a multiple of this many "
                              "columns (outputs unchanged; fewer distinct shapes is faster and keeps CPU "
                              "memory from growing); 1 = off")


@dataclass
class LoraConfig:
    enabled: bool = _f(True, "train a LoRA adapter (the teacher is the adapter-off base)")
    r: int = _f(64, "LoRA rank")
    alpha: int = _f(128, "LoRA alpha (scale = alpha / r)")
    dropout: float = _f(0.0, "LoRA dropout")
    mixed_precision: bool = _f(True, "adapter matmuls in the model dtype (bf16/fp16) under autocast; "
                               "adapter weights and optimizer state stay float32")
    target_modules: list = _f(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "module names that get an adapter",
    )


def _columns(value: Any) -> dict:
    """``data.columns`` as given (``problem=q,solution=ref`` or a mapping) -> {field: column}."""
    from selfdistill.data.columns import parse_columns

    try:
        return parse_columns(value)
    except ValueError as err:
        raise ConfigError(f"data.columns: {err} (e.g. data.columns=problem=question,solution=completion)") from None


@dataclass
class DataConfig:
    spec: str = _f("gsm8k-100", "offline name (gsm8k-100, champ, rg:<task>), local file or hub id")
    columns: dict = _f({}, "field -> column mapping, as `selfdistill data check --columns`: "
                       "problem=q,solution=ref or {problem: q, solution: ref}; fields: problem, "
                       "solution, answer, id, feedback (unmapped fields use the recognised names)", parse=_columns)
    split: typing.Optional[str] = _f(None, "dataset split (hub / multi-split sources)")
    limit: typing.Optional[int] = _f(None, "use only the first N examples")
    on_bad_rows: str = _f("error", "what to do with invalid rows", ("error", "skip"))
    shuffle: bool = _f(True, "reshuffle the examples every epoch (seeded by data_seed + epoch)")
    data_seed: int = _f(0, "seed of the per-epoch shuffle")


@dataclass
class SamplingConfig:
    rollouts_per_prompt: int = _f(1, "n: rollouts sampled per prompt (a group for sdpo/grpo/srpo)")
    max_new_tokens: int = _f(1024, "maximum sampled response length in tokens")
    temperature: float = _f(1.1, "sampling temperature (0 = greedy); not the distillation tau")
    top_p: float = _f(0.95, "nucleus sampling mass")
    top_k: int = _f(20, "sample only among the top-k tokens (0 = off)")
    dynamic_sampling: bool = _f(False, "grpo/srpo/sdpo (DAPO dynamic sampling): drop groups whose rewards are "
                                "all equal and sample more prompts until schedule.prompts_per_step groups "
                                "remain (one process only)")
    max_sampling_batches: int = _f(10, "dynamic sampling: at most this many batches of prompts_per_step "
                                   "prompts sampled per step (then the step trains on what it kept)")


@dataclass
class RolloutConfig:
    backend: str = _f("hf", "rollout generator: hf (transformers generate on the student) or vllm (a vLLM "
                      "engine in the trainer's process, weights loaded in place after every optimizer step; "
                      "pip install 'selfdistill[vllm]')", ("hf", "vllm"))
    gpu_memory_utilization: float = _f(0.3, "vllm: fraction of GPU memory the engine may take (weights, KV "
                                       "cache); the rest is the trainer's")
    sleep: bool = _f(True, "vllm on a GPU: free the engine's KV cache while training and wake it for "
                     "the next rollout (vLLM sleep mode)")


@dataclass
class MethodConfig:
    name: str = _f("opsd", "training method (the method table: selfdistill/methods.py)", tuple(METHODS))
    teacher: str = _f(
        "fixed", "teacher weights: fixed (initial policy), ema, live (current), trust_region", TEACHERS
    )
    ema_rate: float = _f(0.05, "EMA teacher: fraction of the student mixed in after each step")
    trust_region_mix: float = _f(0.5, "trust_region teacher: lerp(ref_logits, student_logits, r)")
    anchor: str = _f("base", "purified-opsd anchor P_0: frozen base pass or detached student",
                     ("base", "student"))
    entropy_beta: float = _f(1.0, "srpo: distillation token weight exp(-beta_H * H_teacher)")
    antisd: bool = _f(False, "grpo: anti-self-distillation advantage (arXiv 2605.11609)")
    antisd_lambda: float = _f(0.1, "anti-sd: weight of sg(phi(u_t)) in the advantage")
    antisd_entropy_gate: float = _f(0.93, "anti-sd: off while teacher entropy < gate x warm-up level")


@dataclass
class ObjectiveConfig:
    beta: float = _f(0.5, "generalized JSD weight (0 forward KL, 1 reverse KL); SDPO's alpha is the same number")
    temperature: float = _f(1.0, "distillation temperature tau applied to every logit set")
    token_clip: typing.Optional[float] = _f(None, "clamp each vocabulary term of the divergence at this value (OPSD 0.05)")
    support: str = _f("full", "divergence support", ("full", "teacher_topk", "student_topk"))
    topk: int = _f(100, "size of a top-k support")
    tail: bool = _f(True, "add a tail bucket holding the mass outside the top-k")
    purified_beta: float = _f(1.0, "purified-opsd: KL strength beta of P* ∝ P_0 exp(Δ_it / beta)")
    purified_clip: float = _f(10.0, "purified-opsd: soft clip c of c*tanh(Δ/c)")
    purified_center: bool = _f(True, "purified-opsd: centre Δ over the vocabulary before the clip")
    eps_low: float = _f(0.2, "grpo/srpo: lower clip of the importance ratio")
    eps_high: float = _f(0.28, "grpo/srpo: upper clip (DAPO clip-higher)")
    adv_std_norm: bool = _f(False, "grpo/srpo: divide group advantages by the group std")
    kl_coef: float = _f(0.0, "grpo/srpo: weight of the k3 KL estimate to the frozen initial policy "
                        "(0 = off: no reference pass)")
    overlong_buffer: int = _f(0, "grpo/srpo (DAPO soft overlong punishment): length buffer L_cache in tokens "
                              "before sampling.max_new_tokens where the reward is lowered (0 = off)")
    overlong_penalty: float = _f(1.0, "DAPO overlong punishment: penalty at max_new_tokens (reward - this)")
    is_clip: float = _f(2.0, "distillation: clip of the detached importance weight exp(logp - logp_old) "
                        "(SDPO is_clip); 1 when each step takes one optimizer update")
    hybrid_lambda: float = _f(0.0, "sdpo: lambda of lambda*A_GRPO + (1-lambda)*A_SDPO (0 = pure distillation)")
    aggregation: str = _f("token", "loss mean over all tokens of the global batch, or per sequence",
                          ("token", "sequence"))
    loss_chunk_size: int = _f(0, "positions per chunk in the chunked loss path (0 = unchunked; recipes use 256)")


@dataclass
class EvalConfig:
    every: int = _f(0, "evaluate the current policy every N optimizer steps (and at the last step) "
                    "with the scorer of `selfdistill eval`, logging eval/* metrics; 0 = off")
    data: str = _f("", "held-out problems with answers: a benchmark name (gsm8k-100, rg:<task>, math500) "
                   "or a local file; needed when eval.every > 0")
    limit: int = _f(32, "evaluate the first N problems")
    k: int = _f(1, "samples per problem (avg@k, pass@k, maj@k)")
    max_new_tokens: typing.Optional[int] = _f(None, "response limit; null = sampling.max_new_tokens")
    temperature: float = _f(0.6, "sampling temperature of the evaluation (0 = greedy)")
    top_p: float = _f(0.95, "nucleus sampling mass of the evaluation")
    top_k: int = _f(20, "top-k of the evaluation (0 = off)")
    problems_per_batch: int = _f(8, "problems per generate call")


@dataclass
class OptimizerConfig:
    lr: float = _f(5e-6, "AdamW peak learning rate")
    weight_decay: float = _f(0.0, "AdamW decoupled weight decay")
    adam_beta1: float = _f(0.9, "AdamW beta1")
    adam_beta2: float = _f(0.999, "AdamW beta2")
    adam_eps: float = _f(1e-8, "AdamW epsilon")
    max_grad_norm: float = _f(1.0, "clip the global gradient norm to this (0 = no clipping)")


@dataclass
class ScheduleConfig:
    max_steps: int = _f(100, "optimizer steps to run")
    prompts_per_step: int = _f(32, "prompts per optimizer step (global, all processes)")
    micro_batch_size: int = _f(8, "rollouts per forward/backward micro-batch (per process)")
    warmup_steps: int = _f(0, "linear learning-rate warm-up steps")
    decay: str = _f("constant", "learning-rate shape after warm-up", ("constant", "cosine"))
    min_lr_ratio: float = _f(0.0, "cosine: final lr as a fraction of the peak")
    max_nonfinite_steps: int = _f(3, "stop after this many skipped non-finite steps in a row")
    ppo_epochs: int = _f(1, "passes over each step's rollouts; > 1 reuses them, so importance ratios leave 1")
    mini_batches: int = _f(1, "optimizer updates per pass: the step's groups split into this many "
                           "mini-batches (verl ppo_mini_batch_size = prompts_per_step / mini_batches)")


@dataclass
class CheckpointConfig:
    every: int = _f(50, "save a checkpoint every N steps (and at the last step)")
    keep_last: int = _f(2, "number of checkpoints kept on disk")


@dataclass
class LoggingConfig:
    tensorboard: bool = _f(True, "write TensorBoard events under output_dir/tb")
    wandb: bool = _f(False, "also log to Weights & Biases (pip install wandb)")
    trackio: bool = _f(False, "also log to trackio (pip install trackio)")
    project: str = _f("selfdistill", "wandb / trackio project name")
    progress: bool = _f(True, "show a tqdm progress bar")


@dataclass
class RewardsConfig:
    for_all: bool = _f(True, "score accuracy for every method when answers exist (group methods always do)")
    timeout_s: float = _f(5.0, "math-verify time limit per response, in seconds")
    answer_format: str = _f("boxed", "how a response's final answer is read for rewards (GRPO/SDPO/SRPO "
                            "training signal, accuracy, eval.every): the last \\boxed{} (papers), or "
                            "boxed_or_last_number for tiny models that never box", ("boxed", "boxed_or_last_number"))


@dataclass
class DiagnosticsConfig:
    pmi: bool = _f(False, "opsd: also log the Purified OPSD PMI diagnostics (1 extra no-grad pass); "
                   "purified-opsd always logs them")
    controls_every: int = _f(0, "log the diagnostics controls (wrong reference, blank baseline) every N "
                             "steps; 0 = off. Needs the diagnostics (purified-opsd, or opsd with diagnostics.pmi)")


@dataclass
class RuntimeConfig:
    device: str = _f("auto", "auto (each process on its CUDA device when there is one, else the CPU) or "
                     "cpu (stay on the CPU even with a GPU)", ("auto", "cpu"))
    cpu_allocator: str = _f("keep", "glibc malloc of a CPU run: keep (large freed blocks stay in the heap "
                            "for reuse: ~3x faster loss math, resident memory stays at its peak) or "
                            "system (glibc's defaults)", ("keep", "system"))
    share_prefixes: bool = _f(True, "no-grad passes of one teacher over several contexts of a row (Purified "
                              "OPSD's privileged, reference-only and base passes) run the prompt "
                              "prefix they share once and reuse its keys/values")


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "lora": LoraConfig,
    "data": DataConfig,
    "sampling": SamplingConfig,
    "rollout": RolloutConfig,
    "method": MethodConfig,
    "objective": ObjectiveConfig,
    "optimizer": OptimizerConfig,
    "schedule": ScheduleConfig,
    "checkpoint": CheckpointConfig,
    "logging": LoggingConfig,
    "rewards": RewardsConfig,
    "diagnostics": DiagnosticsConfig,
    "runtime": RuntimeConfig,
    "eval": EvalConfig,
}
PRIMARY = {"model": "name", "data": "spec", "method": "name", "diagnostics": "pmi"}
# Keys that moved to the section that says what they govern: the old names still work (YAML,
# command line, a run's config.yaml), with a warning naming the new one.
MOVED = {
    "logging.rewards_for_all": "rewards.for_all", "logging.reward_timeout_s": "rewards.timeout_s",
    "logging.answer_format": "rewards.answer_format", "method.diagnostics": "diagnostics.pmi",
    "method.controls_every": "diagnostics.controls_every", "device": "runtime.device",
    "cpu_allocator": "runtime.cpu_allocator", "share_prefixes": "runtime.share_prefixes",
    "rewards_for_all": "rewards.for_all", "reward_timeout_s": "rewards.timeout_s",
}
# sections whose keys repeat training ones (eval.max_new_tokens, eval.temperature): dotted only, so
# the short names keep meaning the training keys (max_new_tokens=64 is sampling.max_new_tokens)
DOTTED_ONLY = ("eval",)

# The random test model only checks that a recipe runs; its samples are noise, so a published
# 32 prompts x 1024 tokens step would take minutes on a CPU for nothing. These sizes replace a
# bundled recipe's when model.name is tiny-random, never a value the user set (command line or
# their own YAML file), unless tiny_sizes=false.
TINY_MODELS = ("tiny-random",)
TINY_SIZES = {
    "schedule.prompts_per_step": 2,
    "schedule.micro_batch_size": 4,
    "sampling.max_new_tokens": 16,
    "lora.r": 8,
    "lora.alpha": 16,
    "model.dtype": "float32",
    "objective.loss_chunk_size": 256,
}


@dataclass
class TrainConfig:
    output_dir: str = _f("runs/selfdistill", "where metrics, config.yaml and checkpoints go")
    seed: int = _f(0, "seed of sampling, data order and initialisation")
    resume: bool = _f(False, "continue from the newest complete checkpoint in output_dir (refused when a "
                      "key that defines the run differs from the checkpoint's; see resume_allow_changes)")
    resume_allow_changes: bool = _f(False, "with resume=true, continue even though run-defining keys (data, "
                                    "sampling, objective, optimizer, ...) changed: each change is logged and "
                                    "recorded in config.yaml and resumes.jsonl with the step it took effect")
    tiny_sizes: bool = _f(True, "with model=tiny-random, use the smoke sizes of TINY_SIZES for every "
                          "key not set explicitly on the command line (false keeps the recipe's)")
    contexts: dict = _f({}, "the renderer's options, typed by selfdistill.contexts.ContextConfig: contexts.max_length=4096, "
                        "contexts.roles.teacher.enable_thinking=true (docs/contexts.md)")
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- recipes


def recipe_names() -> list[str]:
    """Names of the recipes bundled with the package (``selfdistill/recipes/*.yaml``)."""
    folder = resources.files("selfdistill") / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def recipe_text(name_or_path: str) -> str:
    """YAML text of a bundled recipe name or of a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"recipe file {path} does not exist")
        return path.read_text()
    resource = resources.files("selfdistill") / "recipes" / f"{name_or_path}.yaml"
    if not resource.is_file():
        close = difflib.get_close_matches(name_or_path.replace("_", "-"), recipe_names(), n=2, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ConfigError(
            f"unknown recipe {name_or_path!r}: {hint}{'G' if hint else 'g'}ive a YAML path or one of "
            f"{', '.join(recipe_names())}"
        )
    return resource.read_text()


def load_config(recipe: str | None = None, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Build and validate a config from a recipe (bundled name or YAML path) and overrides.

    With a tiny model (``TINY_MODELS``) and ``tiny_sizes`` on, ``TINY_SIZES`` replaces the values of
    a bundled recipe, never a value the user set: a key on the command line or in the user's own
    YAML file keeps its value. Every value changed is logged (key: old -> new).
    """
    raw: dict = {}
    if recipe is not None:
        raw = yaml.safe_load(recipe_text(recipe)) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"recipe {recipe!r} must be a YAML mapping of sections")
    cfg = from_dict(raw)
    user_set = apply_overrides(cfg, overrides)
    if recipe is not None and not _is_bundled(recipe):
        user_set |= _yaml_keys(raw)
    if cfg.tiny_sizes and cfg.model.name in TINY_MODELS:
        changed = []
        for key, value in TINY_SIZES.items():
            old = _get(cfg, key)
            if key not in user_set and old != value:
                _set(cfg, key.split("."), value)
                changed.append(f"{key} {old} -> {value}")
        if changed:
            log.warning("model=%s: smoke sizes for a random test model (tiny_sizes=false keeps the "
                        "recipe's): %s", cfg.model.name, ", ".join(changed))
    validate(cfg)
    return cfg


def _is_bundled(recipe: str) -> bool:
    path = Path(recipe)
    return not (path.suffix in (".yaml", ".yml") or path.exists()) and recipe in recipe_names()


def _yaml_keys(raw: dict) -> set[str]:
    """The dotted keys a recipe mapping sets (``model: tiny-random`` sets ``model.name``)."""
    keys = set()
    for key, value in raw.items():
        if key in SECTIONS and isinstance(value, dict):
            keys |= {f"{key}.{sub}" for sub in value}
        elif key in PRIMARY:
            keys.add(f"{key}.{PRIMARY[key]}")
        else:
            keys.add(key)
    return keys


def _get(cfg: TrainConfig, key: str) -> Any:
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def from_dict(raw: dict) -> TrainConfig:
    """A TrainConfig from a nested mapping; unknown keys and wrong types raise ConfigError."""
    cfg = TrainConfig()
    for key, value in raw.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                _set(cfg, [key], value)  # shorthand: model: tiny-random
                continue
            for sub, v in value.items():
                _set(cfg, [key, sub], v)
        else:
            _set(cfg, [key], value)
    return cfg


def apply_overrides(cfg: TrainConfig, overrides: typing.Sequence[str]) -> set[str]:
    """Apply ``key=value`` strings in order (later wins); returns the dotted keys set."""
    explicit: set[str] = set()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. max_steps=3)")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        path = resolve_key(key.strip())
        if len(path) == 1 and path[0] in PRIMARY and not isinstance(value, dict):
            path = [path[0], PRIMARY[path[0]]]
        _set(cfg, path, value)
        explicit.add(".".join(path))
    return explicit


def all_keys() -> list[str]:
    """Every dotted key a recipe or override may set."""
    from . import context_keys

    keys = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in SECTIONS and f.name != "contexts"]
    for name, cls in SECTIONS.items():
        keys += [f"{name}.{f.name}" for f in dataclasses.fields(cls)]
    return keys + context_keys.keys()


def resolve_key(key: str) -> list[str]:
    """Dotted path for an override key, applying the shorthands of the module docstring."""
    parts = key.split(".")
    if len(parts) > 1:
        return parts
    top = {f.name for f in dataclasses.fields(TrainConfig)}
    if key in top:
        return [key]
    owners = [s for s, cls in SECTIONS.items()
              if s not in DOTTED_ONLY and key in {f.name for f in dataclasses.fields(cls)}]
    if len(owners) == 1:
        return [owners[0], key]
    if len(owners) > 1:
        raise ConfigError(
            f"key {key!r} is ambiguous: write one of {', '.join(f'{o}.{key}' for o in owners)}"
        )
    if key in MOVED:  # an old top-level name; _set says where it went
        return [key]
    raise ConfigError(_unknown(key))


# Names other tools use for a key (HF Trainer, TRL, verl): a typo of one of them is suggested as
# the key it means here ("lernrate" -> lr, via learning_rate).
KNOWN_AS = {
    "learning_rate": "lr", "num_steps": "max_steps", "steps": "max_steps",
    "max_iters": "max_steps", "total_steps": "max_steps", "batch_size": "prompts_per_step",
    "train_batch_size": "prompts_per_step", "per_device_train_batch_size": "micro_batch_size",
    "num_generations": "rollouts_per_prompt", "group_size": "rollouts_per_prompt",
    "max_completion_length": "max_new_tokens", "max_tokens": "max_new_tokens",
    "max_response_length": "max_new_tokens", "warmup": "warmup_steps", "grad_clip": "max_grad_norm",
    "max_norm": "max_grad_norm", "clip_grad_norm": "max_grad_norm", "lora_rank": "lora.r",
    "lora_alpha": "lora.alpha", "model_name": "model.name", "model_name_or_path": "model.name",
    "dataset": "data.spec", "dataset_name": "data.spec", "beta_jsd": "beta", "tau": "objective.temperature",
}


def suggest(key: str, n: int = 3) -> list[str]:
    """Keys close to an unknown ``key``: matched as a whole, on its last path component (so
    ``optimizer.lernrate`` finds ``lr``), and through the names other tools use (``KNOWN_AS``)."""
    keys = all_keys()
    last = key.split(".")[-1]
    full: dict[str, str] = {k: k for k in keys}
    for k in keys:  # a short name stands for its key when it is unique (as in resolve_key)
        if k.split(".")[0] in DOTTED_ONLY:
            continue
        short = k.split(".")[-1]
        full[short] = k if short not in full or full[short] == k else ""
    aliases = {alias: full.get(target) or target for alias, target in KNOWN_AS.items()}
    best: dict[str, tuple[float, str]] = {}  # dotted key -> (ratio, what matched)
    for probe in {key, last}:
        pool = [c for c in [*full, *aliases] if (full.get(c) or aliases.get(c))]
        for match in difflib.get_close_matches(probe, pool, n=8, cutoff=0.6):
            target = full.get(match) or aliases[match]
            ratio = difflib.SequenceMatcher(None, probe, match).ratio()
            if ratio > best.get(target, (0.0, ""))[0]:
                best[target] = (ratio, match)
    ranked = sorted(best, key=lambda t: -best[t][0])[:n]
    return [t if best[t][1] not in aliases else f"{t} (called {best[t][1]} elsewhere)" for t in ranked]


def _unknown(key: str) -> str:
    close = suggest(key)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown config key {key!r}{hint} (selfdistill train --list-keys lists every key)"


def _set(cfg: TrainConfig, path: list[str], value: Any) -> None:
    moved = MOVED.get(".".join(path))
    if moved is not None:
        log.warning("config key %s is now %s (the old name still works)", ".".join(path), moved)
        path = moved.split(".")
    if path[0] == "contexts":  # typed by the renderer's own options
        from .context_keys import set_option

        if len(path) == 1:
            if not isinstance(value, dict):
                raise ConfigError(f"contexts must be a mapping of renderer options, got {value!r}")
            for key, v in value.items():
                set_option(cfg.contexts, [str(key)], v)
        else:
            set_option(cfg.contexts, path[1:], value)
        return
    if len(path) == 1 and path[0] in SECTIONS and not isinstance(value, dict):
        if path[0] not in PRIMARY:
            raise ConfigError(f"section {path[0]!r} needs a mapping or a dotted key like {path[0]}.x=...")
        path = [path[0], PRIMARY[path[0]]]
    obj: Any = cfg
    for part in path[:-1]:
        if part not in SECTIONS or obj is not cfg:
            raise ConfigError(_unknown(".".join(path)))
        obj = getattr(obj, part)
    name = path[-1]
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if name not in fields:
        raise ConfigError(_unknown(".".join(path)))
    if obj is cfg and name in SECTIONS:
        if not isinstance(value, dict):
            raise ConfigError(f"section {name!r} must be a mapping")
        for sub, v in value.items():
            _set(cfg, [name, sub], v)
        return
    hint = typing.get_type_hints(type(obj))[name]
    parse = fields[name].metadata.get("parse")
    if parse is not None:
        value = parse(value)
    setattr(obj, name, coerce(value, hint, ".".join(path)))


def describe() -> str:
    """Every key with its default and help text (for ``--print-config`` and the docs)."""
    from . import context_keys

    lines = []
    for f in dataclasses.fields(TrainConfig):
        if f.name in SECTIONS or f.name == "contexts":
            continue
        lines.append(f"{f.name}: {f.default if f.default is not dataclasses.MISSING else '{}'}  # {f.metadata['help']}")
    for name, cls in SECTIONS.items():
        lines.append(f"{name}:")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            choice = f" [{'|'.join(f.metadata['choices'])}]" if "choices" in f.metadata else ""
            lines.append(f"  {f.name}: {default}  # {f.metadata['help']}{choice}")
    return "\n".join(lines + context_keys.describe())


def to_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)

