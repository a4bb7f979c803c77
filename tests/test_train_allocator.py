"""cpu_allocator=keep: glibc serves large tensors from its heap instead of a fresh mmap each
(checked with mallinfo2 in a child process, so this test process keeps its allocator)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from selfdistill.train import ConfigError, load_config

CHILD = r"""
import ctypes, sys, torch
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
def mmapped_while_alive():
    before = libc.mallinfo2().hblkhd
    x = torch.empty(64 * 2**20, dtype=torch.uint8).fill_(1)
    grown = libc.mallinfo2().hblkhd - before
    del x
    return grown
first = mmapped_while_alive()
if sys.argv[1] == "keep":
    from selfdistill.train.allocator import keep_freed_memory
    assert keep_freed_memory()
print(first, mmapped_while_alive())
"""


def test_keep_freed_memory_serves_large_tensors_from_the_heap():
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc-only setting")
    out = {}
    for mode in ("system", "keep"):
        res = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        out[mode] = [int(v) for v in res.stdout.split()]
    mib64 = 64 * 2**20
    assert out["system"][0] >= mib64 and out["system"][1] >= mib64  # glibc default: a fresh mmap each
    assert out["keep"][0] >= mib64 and out["keep"][1] == 0  # after the call: from the heap


def test_cpu_allocator_is_a_checked_key():
    assert load_config("smoke").runtime.cpu_allocator == "keep"
    assert load_config("smoke", ["runtime.cpu_allocator=system"]).runtime.cpu_allocator == "system"
    with pytest.raises(ConfigError, match="cpu_allocator"):
        load_config("smoke", ["cpu_allocator=jemalloc"])
