"""Device selection, mixed precision (AMP) and out-of-memory detection.

``--amp auto`` means bf16 on GPUs that support it, else fp16 (with a gradient scaler when
training); ``off`` on CPU, where bf16 only pays on CPUs with native bf16 instructions (measured in
``benchmarks/``), so it is opt-in there with ``--amp bf16``.
"""

from __future__ import annotations

import contextlib
import re

import torch

AMP_CHOICES = ("auto", "bf16", "fp16", "off")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DEVICE_HELP = "auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N"


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """The torch device for a user's ``spec``: the one place a device string becomes a device.

    ``auto`` → ``cuda`` when a CUDA GPU is present, else ``cpu``; ``cpu``; ``cuda`` or ``cuda:N``,
    checked against the GPUs present. Raises :class:`ValueError` with one line for the user.
    """
    if isinstance(spec, torch.device):
        return spec
    if not isinstance(spec, str) or not DEVICE_PATTERN.match(spec):
        raise ValueError(f"invalid device {spec!r}: expected {DEVICE_HELP}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            found = f"only {count} CUDA GPU(s) found" if count else "no CUDA GPU is available"
            raise ValueError(f"device {spec} requested but {found} (use --device auto or cpu)")
    return device


def uses_gpu(spec: str | torch.device) -> bool:
    """Whether ``spec`` resolves to a CUDA GPU (a nipype node then holds a GPU slot)."""
    return resolve_device(spec).type == "cuda"


def amp_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None: full fp32)."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"invalid amp {amp!r}; expected one of {AMP_CHOICES}")
    if amp == "off" or (amp == "auto" and device.type == "cpu"):
        return None
    if amp == "fp16":
        if device.type == "cpu":
            raise ValueError(
                "fp16 autocast is only supported on CUDA; use --amp bf16 or off on CPU"
            )
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype`` on ``device``, or a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def amp_name(dtype: torch.dtype | None) -> str:
    return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def needs_grad_scaler(device: torch.device, dtype: torch.dtype | None) -> bool:
    """fp16 training needs loss scaling against gradient underflow; bf16 and fp32 do not."""
    return device.type == "cuda" and dtype == torch.float16


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA (or other accelerator) out-of-memory errors."""
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()
