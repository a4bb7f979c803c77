"""FSDP2 (``torch.distributed.fsdp.fully_shard``) support for the trainer.

What sharding changes for this loop, and how each piece handles it:

- **Wrapping.** On accelerators ``accelerate.prepare`` applies FSDP2 to the ``ResponseScorer``
  (the FSDP config's auto-wrap policy: one unit per decoder layer, the rest in the root). On a CPU
  accelerate never selects FSDP (``accelerate/state.py`` only switches MULTI_GPU-like types to
  FSDP; MULTI_CPU stays DDP-less data parallel), so :func:`shard_on_cpu` calls accelerate's own
  ``fsdp2_prepare_model`` with the plugin the launcher configured: the same wrapping code, run on
  gloo. FSDP1 (``fsdp_version: 1``) is refused: it needs an accelerator (``FSDP needs a non-CPU
  accelerator device``, torch ``fsdp/_init_utils.py``), so it cannot be tested here.
- **The student pass** goes through the root's ``forward``; the root keeps its parameters
  unsharded from forward to the end of backward (FSDP2 never reshards the root after forward), so
  the output layer read right after the pass (``models.output_layer``) is the full weight and its
  gradient is reduce-scattered with the root's.
- **No-grad passes** (rollouts, teachers, the frozen base, controls, evaluation) call the
  unwrapped model, whose parameters are shards. :func:`gathered` all-gathers every FSDP unit once
  and keeps it gathered for the whole phase, so those passes run on full parameters and issue no
  collective of their own: their number may differ between processes (generation lengths, pass
  stacking, prefix sharing), which per-pass all-gathers would deadlock on. Memory: one full copy
  of the model per process during that phase (what ZeRO-3 users of TRL pay for generation).
- **Teachers with weights** keep them sharded like the student (DTensor shards) and
  materialize the full values once per phase (:func:`full`, a collective every process calls in
  the same order), then swap them into the gathered model for their passes.
- **Checkpoints**: trainable weights and teacher state are gathered to full tensors on every
  process (collectives) and written by the main process in the single-process layout; the
  optimizer state is written full and keyed by parameter name
  (``torch.distributed.checkpoint.state_dict``), and loaded back the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import torch
from torch import nn

from selfdistill.models.sharding import copy_full_into, full, is_dtensor  # noqa: F401  (re-exported)


def requested() -> bool:
    """Whether the launcher asked for FSDP (``accelerate launch`` with an FSDP config sets it)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def is_sharded(module: nn.Module | None) -> bool:
    """Whether ``module`` or any of its submodules is an FSDP2 unit."""
    if module is None:
        return False
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in module.modules())


def shard_on_cpu(accelerator, scorer: nn.Module) -> nn.Module:
    """Apply accelerate's FSDP2 wrapping (``fsdp2_prepare_model``) to ``scorer`` on a CPU process
    group, with the plugin the launcher's FSDP config describes; returns the sharded module.

    accelerate runs MULTI_CPU without FSDP whatever the config says, so without this an FSDP launch
    on a CPU would silently replicate the model.
    """
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    from .errors import ConfigError

    plugin = FullyShardedDataParallelPlugin()  # FSDP_* variables set by `accelerate launch`
    if plugin.fsdp_version != 2:
        raise ConfigError(f"fsdp_version={plugin.fsdp_version}: selfdistill supports FSDP2 only "
                          "(fsdp_version: 2 in the accelerate config)")
    shim = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin), mixed_precision="no",
                           is_main_process=accelerator.is_main_process, device=accelerator.device,
                           torch_device_mesh=None, parallelism_config=None)
    sharded = fsdp2_prepare_model(shim, scorer)
    init_root(sharded)
    quiet_view_warning()
    return sharded


def quiet_view_warning() -> None:
    """Silence FSDP2's warning that the scorer returns a view (the response columns of the hidden
    states): it warns on every student pass, and the loss reads those states out of place only (a
    dropped pre-backward hook would change the gradients, which tests/test_train_fsdp.py compares
    with one process's)."""
    import warnings

    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")


def check_version(accelerator) -> None:
    """Refuse FSDP1 under an accelerate-selected FSDP run (the teacher and checkpoint paths here
    read FSDP2's DTensor parameters)."""
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    if plugin is not None and getattr(plugin, "fsdp_version", 2) != 2:
        from .errors import ConfigError

        raise ConfigError(f"fsdp_version={plugin.fsdp_version}: selfdistill supports FSDP2 only "
                          "(fsdp_version: 2 in the accelerate config)")


def init_root(root: nn.Module) -> None:
    """Make ``root`` FSDP2's root now. FSDP2 picks the root lazily, as the first unit to run
    forward; the first forward here may be a rollout or teacher pass on the unwrapped model, which
    would make a decoder layer the root and fail the student pass later."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(root, FSDPModule):
        root._get_fsdp_state()._lazy_init()  # private: no public way to fix the root before forward


@contextmanager
def gathered(*roots: nn.Module | None) -> Iterator[None]:
    """Every FSDP2 unit under ``roots`` all-gathered for the duration (one collective per unit at
    entry, none inside, parameters freed at exit); a no-op for unsharded modules.

    Inside, forward passes on any submodule (the unwrapped model included) see full parameters,
    and units do not reshard after their forward (the setting is restored at exit). Modules are
    not marked FSDP-managed inside either: transformers' ``generate`` would otherwise sync every
    decoding step with the other processes (``synced_gpus``), which hangs when only the main
    process generates (evaluation) and is not needed with nothing to all-gather.
    """
    from torch.distributed.fsdp import FSDPModule

    units = [m for r in roots if r is not None for m in r.modules() if isinstance(m, FSDPModule)]
    if not units:
        yield
        return
    for r in roots:
        init_root(r)
    groups = [g for m in units for g in m._get_fsdp_state()._fsdp_param_groups]
    saved = [g.post_forward_mesh_info for g in groups]
    for m in units:
        m.unshard()
    for g in groups:  # private: None means "keep unsharded after forward" (FSDP2's root setting)
        g.post_forward_mesh_info = None
    managed = [m for r in roots if r is not None for m in r.modules() if getattr(m, "_is_fsdp_managed_module", False)]
    for m in managed:  # the flag torch sets on every module fully_shard manages
        m._is_fsdp_managed_module = False
    try:
        yield
    finally:
        for m in managed:
            m._is_fsdp_managed_module = True
        for g, info in zip(groups, saved):
            g.post_forward_mesh_info = info
        for m in units:
            m.reshard()


def full_state(named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{name: full tensor on the CPU}`` of ``named`` (collectives for DTensors, in name order,
    so every process must call it with the same names)."""
    return {n: full(t.detach()).cpu().clone() for n, t in named.items()}


def optimizer_state(model: nn.Module, optimizer) -> dict:
    """The optimizer's full state keyed by parameter name (collective; every process calls it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, _torch_optimizer(optimizer),
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: nn.Module, optimizer, state: dict) -> None:
    """Load an :func:`optimizer_state` dict (every process holds it) into the sharded optimizer."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, _torch_optimizer(optimizer), optim_state_dict=state,
                             options=StateDictOptions(full_state_dict=True))


def _torch_optimizer(optimizer):
    """The torch optimizer under accelerate's ``AcceleratedOptimizer``."""
    return getattr(optimizer, "optimizer", optimizer)
