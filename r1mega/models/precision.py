"""Numeric precision of training: parameter/compute dtype and optional FP8 through TE."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from r1mega.config.errors import ConfigError

FP8_FORMATS = ("e4m3", "hybrid")
FP8_RECIPES = ("delayed", "tensorwise", "blockwise")


@dataclass
class PrecisionConfig:
    """How numbers are stored and multiplied."""

    dtype: str = "auto"
    """Compute dtype: fp32, bf16, or auto (bf16 on GPU, fp32 on CPU)."""
    fp8: Optional[str] = None
    """FP8 GEMMs through Transformer Engine: null (off), e4m3, or hybrid (e4m3 fwd, e5m2 bwd)."""
    fp8_recipe: str = "blockwise"
    """FP8 scaling recipe: delayed, tensorwise (current scaling), or blockwise (DeepSeek-V3's
    1x128 activation / 128x128 weight tiles)."""
    fp8_param: bool = False
    """Keep FP8 primary weights (saves memory; needs fp8)."""

    def validate(self, prefix: str = "trainer.precision") -> None:
        if self.dtype not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"{prefix}.dtype={self.dtype!r} is not one of auto, fp32, bf16")
        if self.fp8 is not None and self.fp8 not in FP8_FORMATS:
            raise ConfigError(f"{prefix}.fp8={self.fp8!r} is not one of null, {', '.join(FP8_FORMATS)}")
        if self.fp8_recipe not in FP8_RECIPES:
            raise ConfigError(f"{prefix}.fp8_recipe={self.fp8_recipe!r} is not one of {FP8_RECIPES}")
        if self.fp8 is not None and not torch.cuda.is_available():
            raise ConfigError(f"{prefix}.fp8={self.fp8!r} needs a CUDA GPU with Transformer Engine")
        if self.fp8_param and self.fp8 is None:
            raise ConfigError(f"{prefix}.fp8_param=true needs {prefix}.fp8 to be set")

    def torch_dtype(self) -> torch.dtype:
        if self.dtype == "auto":
            return torch.bfloat16 if torch.cuda.is_available() else torch.float32
        return torch.bfloat16 if self.dtype == "bf16" else torch.float32
