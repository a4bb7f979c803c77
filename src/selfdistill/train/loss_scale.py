"""Dynamic loss scaling for float16 runs (older GPUs without bf16, where ``dtype=auto`` picks fp16).

float16 keeps 5 exponent bits: gradients below ~6e-8 flush to zero and activations above 65504
overflow. Scaling the loss by ``scale`` before backward lifts small gradients into range; the
gradients are divided by ``scale`` before clipping and the optimizer step. A step whose scaled
gradients overflowed is skipped and the scale halved; after ``growth_interval`` good steps in a
row it doubles (the policy of ``torch.amp.GradScaler``, which needs float32 master weights under
autocast, while selfdistill keeps the weights themselves in float16 and LoRA adapters in float32).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class LossScaler:
    """``scale`` multiplies the loss; :meth:`unscale_` divides the gradients back.

    Args:
        init_scale: first scale (2**16, as GradScaler).
        growth_interval: good steps in a row before the scale doubles.
        min_scale: the scale never goes below this (1 = no scaling).
    """

    def __init__(self, init_scale: float = 2.0**16, growth_interval: int = 2000, min_scale: float = 1.0):
        self.scale = float(init_scale)
        self.growth_interval = int(growth_interval)
        self.min_scale = float(min_scale)
        self.good_steps = 0

    def unscale_(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Divide every gradient by ``scale`` in place (float32 math for float16 gradients)."""
        inv = 1.0 / self.scale
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    p.grad.copy_((p.grad.float() * inv).to(p.grad.dtype))

    def update(self, overflow: bool) -> None:
        """After a step: halve on overflow (the step was skipped), else count toward growth."""
        if overflow:
            self.scale = max(self.min_scale, self.scale / 2.0)
            self.good_steps = 0
            return
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale *= 2.0
            self.good_steps = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "good_steps": self.good_steps}

    def load_state_dict(self, state: dict) -> None:
        self.scale = float(state["scale"])
        self.good_steps = int(state["good_steps"])
