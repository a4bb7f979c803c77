"""Model + tokenizer loading and aliases, LoRA, teacher handles, forward helpers."""

from selfdistill.models.aliases import ALIASES, alias_path, smollm2_model_path, tiny_random_path
from selfdistill.models.forward import (
    ForwardInputs,
    eval_mode,
    logits_from_hidden,
    OutputLayer,
    output_layer,
    response_hidden,
    response_logits,
    set_length_multiple,
)
from selfdistill.models.loading import ModelLoadError, load_model
from selfdistill.models.lora import (
    LoraSettings,
    apply_lora,
    is_lora,
    merged_adapter,
    trainable_parameter_count,
)
from selfdistill.models.teachers import TEACHER_MODES, Teacher, make_teacher

__all__ = [
    "ForwardInputs",
    "ALIASES",
    "LoraSettings",
    "ModelLoadError",
    "TEACHER_MODES",
    "Teacher",
    "alias_path",
    "apply_lora",
    "eval_mode",
    "is_lora",
    "load_model",
    "logits_from_hidden",
    "make_teacher",
    "merged_adapter",
    "OutputLayer",
    "output_layer",
    "response_hidden",
    "response_logits",
    "set_length_multiple",
    "smollm2_model_path",
    "tiny_random_path",
    "trainable_parameter_count",
]
