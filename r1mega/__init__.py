"""r1mega: the DeepSeek-R1 recipe (GRPO, cold start, rejection sampling, distillation) on Megatron-Core."""

__version__ = "0.1.0"
