"""Device and numeric precision: chosen automatically, forceable with ``train.device``/``precision``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from mtl.errors import ConfigError


def resolve_device(setting: str, local_rank: int = 0) -> torch.device:
    """``auto``: this rank's GPU if CUDA is available, else the CPU; ``cuda`` without a GPU is an error."""
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={setting!r}, but CUDA is not available here; use auto or cpu")
        return torch.device(f"cuda:{local_rank}") if setting == "cuda" else torch.device(setting)
    return torch.device("cpu")


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None = float32 throughout) and whether fp16 needs a gradient scaler."""

    name: str
    device_type: str
    dtype: torch.dtype | None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
        else:
            with torch.autocast(self.device_type, dtype=self.dtype):
                yield

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)


def resolve_precision(setting: str, device: torch.device) -> Precision:
    """``auto``: bf16 autocast on CUDA (fp16 + scaler on GPUs without bf16), float32 on CPU."""
    if setting == "auto":
        if device.type != "cuda":
            setting = "fp32"
        else:
            setting = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if setting == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision=fp16 needs CUDA; use fp32 (or bf16) on the CPU")
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    return Precision(setting, device.type, dtypes[setting])
