"""CPU allocator setting for training processes.

PyTorch's CPU tensors come from glibc ``malloc``. By default glibc serves every block above
32 MiB with a fresh ``mmap`` and returns it to the OS on free, so each new ``[positions, V]``
float32 temporary of the loss (256 x 49,152 x 4 B = 50 MB) is zero-filled page by page again:
on the project's 2-vCPU machine that is ~13 ms per tensor against ~2-4 ms for the arithmetic
(``benchmarks/loss_math.py``: the loss math of a Purified OPSD step 2.95 s -> 0.80 s).
``keep_freed_memory`` makes glibc serve large blocks from its heap and keep freed memory for
reuse. The price is that the process's resident memory stays at its high-water mark instead of
shrinking between steps (the peak is the same: nothing extra is allocated).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


def keep_freed_memory() -> bool:
    """Ask glibc to serve large blocks from the heap (no per-block ``mmap``) and never trim it.

    Process-wide and irreversible for the process. Returns False (and changes nothing) where
    the C library is not glibc (macOS, musl, Windows).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
    except (OSError, TypeError):
        libc = None
    if libc is None or not hasattr(libc, "gnu_get_libc_version"):  # glibc only
        log.info("not glibc: cpu_allocator=keep has no effect here")
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
