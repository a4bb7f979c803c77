"""AdamW over the trainable parameters and the warm-up + constant/cosine learning-rate shape."""

from __future__ import annotations

import math

import torch

from .config import OptimizerConfig, ScheduleConfig


def lr_factor(step: int, sched: ScheduleConfig) -> float:
    """Multiplier of the peak lr for optimizer step ``step`` (0-based).

    Linear warm-up from 1/(warmup+1) to 1 over ``warmup_steps``, then constant or a cosine decay
    to ``min_lr_ratio`` at ``max_steps``.
    """
    if step < sched.warmup_steps:
        return (step + 1) / (sched.warmup_steps + 1)
    if sched.decay == "constant":
        return 1.0
    span = max(1, sched.max_steps - sched.warmup_steps)
    progress = min(1.0, (step - sched.warmup_steps) / span)
    return sched.min_lr_ratio + (1 - sched.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(params, opt: OptimizerConfig, sched: ScheduleConfig):
    """(AdamW, LambdaLR) over ``params`` (only those with requires_grad)."""
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise RuntimeError("the model has no trainable parameters (check lora.target_modules)")
    optimizer = torch.optim.AdamW(
        trainable, lr=opt.lr, betas=(opt.adam_beta1, opt.adam_beta2), eps=opt.adam_eps,
        weight_decay=opt.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, sched))
    return optimizer, scheduler
