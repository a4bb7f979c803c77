"""Reading and writing parameters that may be FSDP2 shards (DTensors).

The model layer only needs these four helpers: teacher handles keep their weights in the same
layout as the student's parameters (shards under FSDP2, plain tensors otherwise) and need the full
values when they score. Wrapping and gathering live in ``selfdistill.train.fsdp``.
"""

from __future__ import annotations

import torch


def is_dtensor(t: torch.Tensor) -> bool:
    """Whether ``t`` is a DTensor (a sharded FSDP2 parameter, or state derived from one)."""
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor: all-gathered when ``t`` is a DTensor (a collective: every process must
    call it in the same order), ``t`` itself otherwise."""
    return t.full_tensor() if is_dtensor(t) else t


def copy_full_into(dest: torch.Tensor, value: torch.Tensor) -> None:
    """Write the full tensor ``value`` into ``dest``, into this process's shard when ``dest`` is a
    DTensor (every process holds ``value``, so nothing moves between processes)."""
    if is_dtensor(dest):
        from torch.distributed.tensor import distribute_tensor

        shard = distribute_tensor(value.to(dest.device, dest.dtype), dest.device_mesh, dest.placements,
                                  src_data_rank=None).to_local()
        dest.to_local().copy_(shard)
    else:
        dest.copy_(value)
