"""Device and precision, decided once from what the hardware computes natively.

Every command resolves ``device="auto"`` and ``dtype="auto"`` here and passes the result down;
nothing else in the package guesses. The rules:

- device ``auto``: the first CUDA device when torch sees one, else the CPU.
- dtype ``auto`` on CUDA: bfloat16 where ``torch.cuda.is_bf16_supported()`` (Ampere and newer),
  else float16 (the training loop then scales the loss; see :class:`LossScaler`).
- dtype ``auto`` on a CPU: bfloat16 only where oneDNN computes it natively
  (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``: AVX-512 with bf16 or AMX). On a plain AVX2
  CPU bf16 matmuls are emulated, many times slower than float32 (docs/benchmarks/precision.md), so
  float32.
  ``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA`` set below AVX-512 count as no native bf16,
  so a bf16 CPU can be made to choose like an AVX2 one.
- dtype ``auto`` on anything else (MPS, XLA): float32.

An explicit dtype always wins; :func:`resolve` adds a warning when that dtype is emulated there.
"""

from __future__ import annotations

import functools
import os
import platform
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)
DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda, cuda:N"

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) under which its bf16 kernels are emulated
_ONEDNN_NO_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


class EmulatedPrecisionWarning(UserWarning):
    """An explicitly chosen dtype is emulated in software on this device (slow, not wrong)."""


@dataclass(frozen=True)
class Hardware:
    """What a run was placed on and why; every report and benchmark records :meth:`describe`.

    Attributes:
        device: ``"cpu"``, ``"cuda:0"``, ...
        dtype: the weight dtype chosen, one of :data:`DTYPES`.
        reason: one sentence: why that dtype (for the start-up line and the reports).
        processor: CPU model name, or the GPU's name on CUDA.
        cpu_capability: ATen's vector ISA (``AVX2``, ``AVX512``, ...).
        native_bf16: whether the device computes bf16 matmuls natively.
        warning: set when an explicit dtype is emulated here, else ``""``.
    """

    device: str
    dtype: str
    reason: str
    processor: str
    cpu_capability: str
    native_bf16: bool
    warning: str = ""

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def describe(self) -> dict:
        """A flat JSON-ready record (device, dtype, reason, processor, capability, threads, torch,
        and ``isa_caps``: the ISA-capping variables set in the environment, e.g. for emulating an
        AVX2 CPU on a bf16 one)."""
        return {**asdict(self), "threads": torch.get_num_threads(), "torch": torch.__version__,
                "isa_caps": isa_caps()}

    def line(self) -> str:
        """The one line printed at start: ``device cpu (AMD EPYC, AVX2), float32: <reason>``."""
        caps = " ".join(f"{k}={v}" for k, v in isa_caps().items())
        where = f"{self.processor}, {self.cpu_capability}" + (f", capped by {caps}" if caps else "")
        return f"device {self.device} ({where}), {self.dtype}: {self.reason}"


ISA_CAP_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def isa_caps() -> dict[str, str]:
    """The ISA-capping environment variables that are set (they change what the CPU computes)."""
    return {k: os.environ[k] for k in ISA_CAP_VARIABLES if os.environ.get(k)}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto``/None -> CUDA when available, else CPU; anything else is checked and returned.

    Raises:
        ValueError: a CUDA device asked for on a machine where torch sees none, or a bad name.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device={device!r} is not a device name: use {DEVICE_HELP}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: torch sees no CUDA device here (torch "
                         f"{torch.__version__}); use device=auto or device=cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def cpu_capability() -> str:
    """ATen's CPU vector capability (``AVX2``, ``AVX512``, ``DEFAULT``, ...)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - an old or exotic build: report rather than fail
        return "unknown"


def cpu_native_bf16() -> bool:
    """Whether oneDNN computes bf16 natively here (and is not capped below it by the environment)."""
    if not _onednn_bf16():
        return False
    if cpu_capability().upper() in ("DEFAULT", "AVX2", "ZVECTOR", "VSX"):  # ATEN_CPU_CAPABILITY=avx2
        return platform.machine().lower() in ("arm64", "aarch64")
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).upper()
    if cap in _ONEDNN_NO_BF16:
        return False
    flags = _cpu_flags()  # oneDNN also says yes on AVX-512 CPUs that only emulate bf16 (Skylake)
    return flags is None or bool(flags & {"avx512_bf16", "amx_bf16", "avx_ne_convert"})


def _onednn_bf16() -> bool:
    """oneDNN's own answer (honours ``ONEDNN_MAX_CPU_ISA``; says yes on any AVX-512 CPU)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - builds without oneDNN
        return False


def _cpu_flags() -> set[str] | None:
    """The x86 CPU's flags from /proc/cpuinfo, or None where they cannot be read (not Linux x86)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    flags = _cpuinfo_field("flags")
    return set(flags.split()) if flags is not None else None


@functools.cache
def _cpuinfo_field(name: str) -> str | None:
    """The first ``name : value`` of /proc/cpuinfo (read once per process), or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == name:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def processor_name(device: torch.device | None = None) -> str:
    """The GPU's name on CUDA, else the CPU model from /proc/cpuinfo (or ``platform``)."""
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def auto_dtype(device: torch.device) -> tuple[str, str]:
    """``(dtype, reason)`` of ``dtype=auto`` on ``device`` (rules in the module docstring)."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bfloat16", f"{torch.cuda.get_device_name(device)} computes bf16 natively"
        return "float16", (f"{torch.cuda.get_device_name(device)} has no native bf16; float16 "
                           "weights with loss scaling")
    if device.type == "cpu":
        if cpu_native_bf16():
            return "bfloat16", "this CPU computes bf16 natively (oneDNN: AVX-512 bf16 or AMX)"
        return "float32", (f"this CPU ({cpu_capability()}) has no native bf16: bf16 would be "
                           "emulated, far slower than float32")
    return "float32", f"no native low-precision path assumed on {device.type}"


def _emulated(dtype: str, device: torch.device) -> str:
    if device.type == "cpu" and dtype == "bfloat16" and not cpu_native_bf16():
        return (f"dtype=bfloat16 on a CPU without native bf16 ({cpu_capability()}): emulated, "
                "far slower than float32 (dtype=auto picks float32 here)")
    if device.type == "cpu" and dtype == "float16":
        return "dtype=float16 on a CPU: most CPUs emulate it; dtype=auto picks the fast one"
    if device.type == "cuda" and dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        return "dtype=bfloat16 on a GPU without native bf16: emulated; dtype=auto picks float16"
    return ""


def resolve(dtype: str = "auto", device: str | torch.device | None = "auto", *,
            warn: bool = True) -> Hardware:
    """The device and dtype of a run, with the reason and the machine, in one record.

    Args:
        dtype: ``auto`` or one of :data:`DTYPES`; an explicit one wins (warned when emulated).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a ``torch.device``.
        warn: emit :class:`EmulatedPrecisionWarning` for an emulated explicit dtype.

    Raises:
        ValueError: unknown dtype, or a device that is not here.
    """
    if dtype not in DTYPE_CHOICES:
        raise ValueError(f"dtype={dtype!r}: use one of {', '.join(DTYPE_CHOICES)}")
    dev = resolve_device(device)
    if dtype == "auto":
        chosen, reason = auto_dtype(dev)
        note = ""
    else:
        chosen, reason = dtype, "asked for explicitly"
        note = _emulated(dtype, dev)
        if note and warn:
            warnings.warn(note, EmulatedPrecisionWarning, stacklevel=2)
    native = torch.cuda.is_bf16_supported() if dev.type == "cuda" else cpu_native_bf16()
    return Hardware(device=str(dev), dtype=chosen, reason=reason, processor=processor_name(dev),
                    cpu_capability=cpu_capability(), native_bf16=bool(native), warning=note)
