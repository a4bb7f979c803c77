"""Plain supervised fine-tuning on self-generated (prompt, response) pairs.

Used by the ``offline-sft`` study (arXiv 2603.24472: SFT on correct solution-guided traces vs
unguided ones). What it keeps and drops, up front:
- the prompt is the STUDENT prompt (question only) even when the response was generated with the
  solution in context: that is the point of the experiment;
- loss = token mean of the next-token cross-entropy over response tokens only (prompt and padding
  positions carry no loss), over the whole batch;
- AdamW + lr shape from ``train.optim``, a LoRA adapter from ``selfdistill.models``, one process
  on ``device`` in ``dtype`` (both ``auto`` by default: ``selfdistill.hardware``; float16 weights
  get dynamic loss scaling, ``loss_scale.LossScaler``, and a step whose gradients overflow is
  skipped). No checkpoints mid-run (runs are minutes long): a killed run restarts;
- the output ``output_dir/final`` is ``save_pretrained`` of the adapter (or model) plus the
  tokenizer, the same layout as ``selfdistill train``, so ``load_model`` and the eval runner read it;
  ``output_dir/hardware.json`` records the device and dtype (``Hardware.describe()``).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .config import OptimizerConfig, ScheduleConfig
from .optim import build_optimizer


@dataclass
class SFTConfig:
    """Settings of one SFT run (units: steps are optimizer steps, lr is the AdamW peak).

    ``dtype`` and ``device`` take ``selfdistill.hardware`` values (``auto``: the fast dtype on the
    first CUDA device, else the CPU)."""

    model: str
    output_dir: str
    dtype: str = "auto"
    device: str = "auto"
    lora_r: int = 16
    lora_alpha: int = 32
    lr: float = 1e-4
    epochs: int = 1
    batch_size: int = 8
    max_grad_norm: float = 1.0
    seed: int = 0


def collate(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded batch of prompt + response ids.

    Returns (ids_B_L, attention_mask_B_L, loss_mask_B_L): the loss mask is 1 exactly on response
    tokens (the tokens to predict), 0 on prompt and padding.
    """
    if not pairs:
        raise ValueError("collate needs at least one (prompt_ids, response_ids) pair")
    for i, (prompt, response) in enumerate(pairs):
        if not prompt or not response:
            raise ValueError(f"pair {i}: prompt_ids and response_ids must both be non-empty")
    L = max(len(p) + len(r) for p, r in pairs)
    ids_B_L = torch.full((len(pairs), L), pad_id, dtype=torch.long)
    attention_mask_B_L = torch.zeros((len(pairs), L), dtype=torch.long)
    loss_mask_B_L = torch.zeros((len(pairs), L), dtype=torch.bool)
    for b, (prompt, response) in enumerate(pairs):
        n_p, n = len(prompt), len(prompt) + len(response)
        ids_B_L[b, :n] = torch.tensor([*prompt, *response], dtype=torch.long)
        attention_mask_B_L[b, :n] = 1
        loss_mask_B_L[b, n_p:n] = True
    return ids_B_L, attention_mask_B_L, loss_mask_B_L


def sft_loss(model, ids_B_L: torch.Tensor, attention_mask_B_L: torch.Tensor,
             loss_mask_B_L: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(mean next-token NLL over the masked response tokens, number of those tokens).

    Logits at column t predict the token at column t + 1, so the loss uses logits[:, :-1]
    against ids[:, 1:] where loss_mask[:, 1:] is set.
    """
    logits_B_L_V = model(input_ids=ids_B_L, attention_mask=attention_mask_B_L).logits
    logp_B_T_V = torch.log_softmax(logits_B_L_V[:, :-1].float(), dim=-1)
    target_B_T = ids_B_L[:, 1:]
    mask_B_T = loss_mask_B_L[:, 1:]
    nll_B_T = -logp_B_T_V.gather(-1, target_B_T.unsqueeze(-1)).squeeze(-1)
    n = int(mask_B_T.sum())
    return (nll_B_T * mask_B_T).sum() / max(n, 1), n


def train_sft(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], cfg: SFTConfig) -> Path:
    """Fine-tune ``cfg.model`` with LoRA on ``pairs``; writes metrics.jsonl, hardware.json and final/."""
    import sys

    from selfdistill.hardware import resolve
    from selfdistill.models import LoraSettings, apply_lora, load_model

    from .loss_scale import LossScaler

    if not pairs:
        raise ValueError("train_sft got no (prompt, response) pairs: nothing to fine-tune on")
    hardware = resolve(cfg.dtype, cfg.device)
    print(f"selfdistill sft: {hardware.line()}", file=sys.stderr)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hardware.json").write_text(json.dumps(hardware.describe(), indent=2) + "\n")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model, tokenizer = load_model(cfg.model, dtype=hardware.dtype, device=hardware.device)
    model = apply_lora(model, LoraSettings(r=cfg.lora_r, alpha=cfg.lora_alpha))
    device = next(model.parameters()).device
    scaler = LossScaler() if hardware.dtype == "float16" else None
    model.train()
    steps_per_epoch = (len(pairs) + cfg.batch_size - 1) // cfg.batch_size
    schedule = ScheduleConfig(max_steps=steps_per_epoch * cfg.epochs, warmup_steps=0)
    optimizer, scheduler = build_optimizer(
        model.parameters(), OptimizerConfig(lr=cfg.lr, max_grad_norm=cfg.max_grad_norm), schedule)
    trainable = [p for p in model.parameters() if p.requires_grad]
    step = 0
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as log:
        for epoch in range(cfg.epochs):
            order = list(range(len(pairs)))
            rng.shuffle(order)
            for i in range(0, len(order), cfg.batch_size):
                t0 = time.perf_counter()
                batch = collate([pairs[j] for j in order[i:i + cfg.batch_size]], tokenizer.pad_token_id)
                loss, n_tokens = sft_loss(model, *(t.to(device) for t in batch))
                (loss * (scaler.scale if scaler else 1.0)).backward()
                if scaler is not None:
                    scaler.unscale_(trainable)
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    trainable, cfg.max_grad_norm or float("inf"))
                lr = scheduler.get_last_lr()[0]
                finite = bool(torch.isfinite(grad_norm))
                if scaler is not None:
                    scaler.update(overflow=not finite)
                stepped = finite or scaler is None  # float16 overflow: skip, smaller scale next
                if stepped:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                log.write(json.dumps({"step": step, "epoch": epoch, "loss": float(loss.detach()),
                                      "tokens": n_tokens, "lr": lr, "grad_norm": float(grad_norm),
                                      "skipped": int(not stepped),
                                      "time/step_s": time.perf_counter() - t0}) + "\n")
                log.flush()
    final = out / "final"
    model.save_pretrained(str(final))
    tokenizer.save_pretrained(str(final))
    return out
