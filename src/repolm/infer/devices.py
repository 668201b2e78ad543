"""Device and dtype names as users write them ("auto", "cuda:1", "bfloat16") -> torch objects, with clear errors."""

from __future__ import annotations

import torch

from repolm.errors import RepolmError, one_line

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str, option: str = "device") -> torch.device:
    """ "auto" -> cuda when available, else cpu; other names as torch spells them ("cpu", "cuda:1").

    `option` is how the caller's user wrote the setting ("--device", "device"): errors name it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise RepolmError(f"{option} {name!r} is not a device ({one_line(error)})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RepolmError(f"{option} {name!r} was asked for, but no CUDA device is available")
    return device


def resolve_dtype(name: str, device: torch.device, option: str = "dtype") -> torch.dtype:
    """ "auto" -> bfloat16 on GPUs, float32 on CPUs (bf16 matmuls are ~100x slower on CPUs without AVX512-BF16/AMX);
    or one of `DTYPES`' names. `option` names the setting in errors, as in `resolve_device`."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise RepolmError(f"{option} {name!r} is not one of: auto, {', '.join(DTYPES)}")
    return DTYPES[name]
