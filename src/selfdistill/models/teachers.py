"""Teacher handles: which weights score the teacher contexts.

Every mode has one interface. ``hidden(inputs)`` / ``logits(inputs)`` take a
``models.ForwardInputs`` (a renderer batch's ids, mask, positions, response start, T) and run under
``torch.no_grad()`` in eval mode (dropout off; the previous train flags are restored).
``after_step(student)`` is called by the trainer after every optimizer step.
``state_dict()`` / ``load_state_dict()`` checkpoint whatever the mode owns.

Modes (``make_teacher(model, mode, ...)``):
  fixed         the initial model. With LoRA: the same model with the adapter disabled (no copy).
                Without LoRA: a frozen deep copy made at construction (its weights are in
                ``state_dict()`` so a resumed run keeps the original teacher).
  ema(rate)     an exponential moving average of the trainable parameters only (LoRA weights, or
                every parameter in a full fine-tune), kept in float32 and swapped into the model
                for teacher passes: after each step ``ema = (1 - rate) * ema + rate * student``.
  live          the current weights, without gradients.
  trust_region(r)  ``lerp(ref_logits, student_logits, r) = ref + r * (student - ref)`` with ref
                the fixed teacher. It needs the student's logits on the teacher context, so
                ``logits(..., student_logits_B_T_V=...)`` takes them (detached inside); chunked
                callers use ``hidden()`` / ``output_layer()`` (the reference's) and ``mix()``.

Under FSDP2 (the student's parameters are DTensor shards) the EMA and a full fine-tune's fixed
teacher keep their weights as shards of the same layout (no deep copy of a sharded module), and
score only inside ``gathered()``: the trainer enters it on every handle while the student is
all-gathered (``selfdistill.train.fsdp.gathered``); it materializes the full values once (a
collective) for the passes to swap in, and output layers are copied out of the gathered storage,
which is freed when the phase ends.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from selfdistill.models.forward import (ForwardInputs, OutputLayer, eval_mode, output_layer, response_hidden,
                                        response_logits)
from selfdistill.models.lora import adapter_disabled, is_lora
from selfdistill.models.sharding import copy_full_into, full, is_dtensor

TEACHER_MODES = ("fixed", "ema", "live", "trust_region")


class Teacher:
    """Base class: subclasses say which module (and weights) a teacher pass runs in ``_weights``."""

    mode = "live"

    def __init__(self, model: nn.Module):
        self.model = model
        self._gathered = False  # inside gathered(): the model's parameters are FSDP's full copies
        self._layer: OutputLayer | None = None  # this phase's output layer, copied out (FSDP)

    @contextmanager
    def _weights(self) -> Iterator[nn.Module]:
        yield self.model

    def _materialize(self) -> None:
        """Gather the handle's own sharded weights to full tensors (FSDP; a collective)."""

    def _release(self) -> None:
        """Drop what ``_materialize`` gathered."""

    @contextmanager
    def gathered(self) -> Iterator[None]:
        """The phase in which an FSDP trainer has the student all-gathered: the handle's own
        weights are gathered too (every process must enter it, in the same order), and output
        layers are copies that outlive the phase. Outside FSDP nothing needs it."""
        self._materialize()
        self._gathered = True
        try:
            yield
        finally:
            self._gathered, self._layer = False, None
            self._release()

    def hidden(self, inputs: ForwardInputs) -> torch.Tensor:
        """Teacher hidden states ``hidden_B_T_H`` at the response-predicting columns (no grad)."""
        with torch.no_grad(), self._weights() as module, eval_mode(module):
            return response_hidden(module, inputs)

    def hidden_shared(self, ops: list, args: list[ForwardInputs]) -> list[torch.Tensor]:
        """``hidden`` for several contexts of the same rows at once, running the prompt prefixes
        they share once (``models.prefix``: ``ops`` from ``prefix.plan``, ``args`` as ``hidden``'s)."""
        from selfdistill.models.prefix import run_plan

        with torch.no_grad(), self._weights() as module, eval_mode(module):
            return run_plan(module, ops, args)

    def shares_prefixes(self) -> bool:
        """Whether ``hidden_shared`` reproduces ``hidden`` for this model (full attention only)."""
        from selfdistill.models.prefix import shareable

        with self._weights() as module:
            return shareable(module)

    def output_layer(self) -> OutputLayer:
        """The teacher's output layer (weight, bias, soft-cap; detached), to pair with ``hidden``:
        the weights the teacher's passes run with (the EMA's for an EMA teacher)."""
        if self._gathered and self._layer is not None:
            return self._layer
        with self._weights() as module:
            layer = output_layer(module).detached()
        if self._gathered:  # views of FSDP's gathered storage, freed at the phase's end
            bias = None if layer.bias_V is None else layer.bias_V.clone()
            layer = self._layer = OutputLayer(layer.weight_V_H.clone(), bias, layer.softcap)
        return layer

    def logits(self, inputs: ForwardInputs, *, student_logits_B_T_V: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher logits ``logits_B_T_V`` (no grad). Only trust_region reads the student logits."""
        with torch.no_grad(), self._weights() as module, eval_mode(module):
            return response_logits(module, inputs)

    def after_step(self, student: nn.Module) -> None:
        """Hook called after each optimizer step (EMA update); a no-op for most modes."""

    def state_dict(self) -> dict:
        return {"mode": self.mode}

    def load_state_dict(self, state: dict) -> None:
        if state.get("mode") != self.mode:
            raise ValueError(
                f"teacher checkpoint has mode {state.get('mode')!r} but this run uses {self.mode!r}"
            )


@contextmanager
def _swapped(model: nn.Module, values: dict[str, torch.Tensor]) -> Iterator[nn.Module]:
    """``model`` with the parameters named in ``values`` replaced by them (cast to each
    parameter's dtype) for the duration; the original data objects are put back."""
    params = dict(model.named_parameters())
    saved = {}
    with torch.no_grad():
        try:
            for name, value in values.items():
                saved[name] = params[name].data
                params[name].data = value.to(params[name].dtype)
            yield model
        finally:
            for name, data in saved.items():
                params[name].data = data


class LiveTeacher(Teacher):
    """The current weights, no gradients."""

    mode = "live"


class FixedTeacher(Teacher):
    """The model as it was at construction: adapter disabled (LoRA) or a frozen copy (full FT)."""

    mode = "fixed"

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self.frozen: nn.Module | None = None
        # FSDP2 full fine-tune: the initial parameters' shards (a sharded module cannot be deep-copied)
        self.shards: dict[str, torch.Tensor] | None = None
        self._full: dict[str, torch.Tensor] | None = None
        if not is_lora(model):
            if any(is_dtensor(p) for p in model.parameters()):
                self.shards = {n: p.detach().clone() for n, p in model.named_parameters()}
            else:
                self.frozen = copy.deepcopy(model).eval().requires_grad_(False)

    def _materialize(self) -> None:
        if self.shards is not None:
            self._full = {n: full(v) for n, v in self.shards.items()}

    def _release(self) -> None:
        self._full = None

    @contextmanager
    def _weights(self) -> Iterator[nn.Module]:
        if self.frozen is not None:
            yield self.frozen
        elif self.shards is not None:
            if self._full is None:
                raise RuntimeError("a sharded (FSDP) fixed teacher scores only inside gathered(), with the "
                                   "student all-gathered")
            with _swapped(self.model, self._full) as module:
                yield module
        else:
            with adapter_disabled(self.model):
                yield self.model

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.frozen is not None:
            state["frozen"] = {k: v.clone() for k, v in self.frozen.state_dict().items()}
        elif self.shards is not None:
            state["frozen"] = {k: full(v).clone() for k, v in self.shards.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if self.frozen is not None or self.shards is not None:
            if "frozen" not in state:
                raise ValueError("fixed teacher checkpoint has no frozen weights (a LoRA run's?)")
        if self.frozen is not None:
            self.frozen.load_state_dict(state["frozen"])
        elif self.shards is not None:
            with torch.no_grad():
                for name, value in state["frozen"].items():
                    copy_full_into(self.shards[name], value)


class EmaTeacher(Teacher):
    """EMA of the trainable parameters, kept in float32, swapped in for teacher passes."""

    mode = "ema"

    def __init__(self, model: nn.Module, rate: float):
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"ema rate={rate}: must be in (0, 1], e.g. 0.05 (SDPO) or 0.001")
        super().__init__(model)
        self.rate = rate
        self.ema = {
            name: p.detach().to(torch.float32).clone()
            for name, p in model.named_parameters()
            if p.requires_grad
        }
        if not self.ema:
            raise ValueError("ema teacher: the model has no trainable parameters to average")
        self._full: dict[str, torch.Tensor] | None = None  # FSDP: the averages gathered for a phase

    def _materialize(self) -> None:
        if any(is_dtensor(v) for v in self.ema.values()):
            self._full = {n: full(v) for n, v in self.ema.items()}

    def _release(self) -> None:
        self._full = None

    @contextmanager
    def _weights(self) -> Iterator[nn.Module]:
        if self._full is None and any(is_dtensor(v) for v in self.ema.values()):
            raise RuntimeError("a sharded (FSDP) EMA teacher scores only inside gathered(), with the "
                               "student all-gathered")
        with _swapped(self.model, self._full if self._full is not None else self.ema) as module:
            yield module

    def after_step(self, student: nn.Module) -> None:
        """``ema <- (1 - rate) * ema + rate * student`` for every tracked parameter."""
        params = dict(_unwrap(student).named_parameters())
        with torch.no_grad():
            for name, value in self.ema.items():
                value.lerp_(params[name].detach().to(torch.float32), self.rate)

    def state_dict(self) -> dict:
        """Rate and averages (full tensors: under FSDP a collective every process must call)."""
        ema = {name: full(value).clone() for name, value in self.ema.items()}
        return {**super().state_dict(), "rate": self.rate, "ema": ema}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if set(state["ema"]) != set(self.ema):
            raise ValueError("ema teacher checkpoint tracks different parameters than this model")
        for name, value in state["ema"].items():
            copy_full_into(self.ema[name], value)


class TrustRegionTeacher(FixedTeacher):
    """``lerp(ref_logits, student_logits, r)`` with ref the fixed teacher."""

    mode = "trust_region"

    def __init__(self, model: nn.Module, r: float):
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"trust_region r={r}: must be in [0, 1]")
        super().__init__(model)
        self.r = r

    def mix(self, ref_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
        """``ref + r * (student - ref)``; the student logits are detached."""
        return torch.lerp(ref_logits, student_logits.detach().to(ref_logits.dtype), self.r)

    def logits(self, inputs: ForwardInputs, *, student_logits_B_T_V: torch.Tensor | None = None) -> torch.Tensor:
        """``ref + r * (student - ref)`` on the response columns (no grad)."""
        if student_logits_B_T_V is None:
            raise ValueError(
                "trust_region teacher needs student_logits_B_T_V: the student's logits on the "
                "teacher context (same batch, same response columns)"
            )
        ref_B_T_V = super().logits(inputs)
        if student_logits_B_T_V.shape != ref_B_T_V.shape:
            raise ValueError(
                f"student_logits_B_T_V has shape {tuple(student_logits_B_T_V.shape)}, "
                f"the teacher's is {tuple(ref_B_T_V.shape)}"
            )
        return self.mix(ref_B_T_V, student_logits_B_T_V)


def make_teacher(
    model: nn.Module, mode: str = "fixed", *, rate: float | None = None, r: float | None = None
) -> Teacher:
    """Build a teacher handle for ``model`` (the student, LoRA-wrapped or not).

    ``rate`` is required for ``ema``, ``r`` for ``trust_region``.
    """
    if mode == "fixed":
        return FixedTeacher(model)
    if mode == "live":
        return LiveTeacher(model)
    if mode == "ema":
        if rate is None:
            raise ValueError("teacher mode 'ema' needs rate (e.g. 0.05)")
        return EmaTeacher(model, rate)
    if mode == "trust_region":
        if r is None:
            raise ValueError("teacher mode 'trust_region' needs r (e.g. 0.5)")
        return TrustRegionTeacher(model, r)
    raise ValueError(f"teacher mode {mode!r}: use one of {TEACHER_MODES}")


def _unwrap(model: nn.Module) -> nn.Module:
    """The module under a DistributedDataParallel wrapper (accelerate's multi-process case)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
