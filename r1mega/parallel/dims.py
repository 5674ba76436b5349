"""``ParallelDims``: validate every parallel size once, then build Megatron's process groups.

Megatron-Core lays ranks out as ``world = tp * cp * dp * pp`` for dense layers and, for the MoE
layers, re-folds ``tp * cp * dp`` into ``etp * ep * edp`` (expert data parallel). The
constraints below are what Megatron asserts deep inside its initialisation; checking them here
turns each into one message that names the config keys, before any process group exists.
"""

from __future__ import annotations

import math

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from r1mega.config.errors import ConfigError
from r1mega.models.config import ModelConfig
from r1mega.parallel.config import ParallelConfig


@dataclass(frozen=True)
class ParallelDims:
    """Resolved parallel sizes; construct with :meth:`resolve`."""

    world_size: int
    tp: int
    pp: int
    cp: int
    dp: int
    ep: int
    etp: int
    vpp: int | None
    sequence_parallel: bool

    @property
    def expert_dp(self) -> int:
        return self.world_size // (self.pp * self.ep * self.etp)

    def pad_multiple(self, on_gpu: bool) -> int:
        """What a padded batch's sequence length rounds up to. Sequence parallelism splits the
        sequence over the TP ranks, context parallelism into 2 * cp chunks; on GPU also 16, for
        tensor-core and FP8 GEMM shapes. On CPU nothing more: rounding the tiny pipeline's
        101-token rows up to 112 spent 11% of its training compute on padding."""
        multiple = math.lcm(self.tp if self.sequence_parallel else 1, 2 * self.cp if self.cp > 1 else 1)
        return math.lcm(multiple, 16) if on_gpu else multiple

    @classmethod
    def resolve(
        cls,
        cfg: ParallelConfig,
        world_size: int,
        model: ModelConfig | None = None,
        global_batch_size: int | None = None,
        micro_batch_size: int | None = None,
    ) -> "ParallelDims":
        """Check every constraint and return resolved sizes; ValueError names the keys."""
        for key in ("tp", "pp", "ep", "etp", "cp"):
            if getattr(cfg, key) < 1:
                raise ConfigError(f"parallel.{key} must be >= 1, got {getattr(cfg, key)}")
        sp = cfg.tp > 1 if cfg.sequence_parallel is None else (cfg.sequence_parallel and cfg.tp > 1)
        if cfg.vpp is not None and (cfg.vpp < 1 or cfg.pp == 1):
            raise ConfigError(f"parallel.vpp={cfg.vpp} needs parallel.pp > 1 and vpp >= 1")
        if model is not None:  # what the model allows does not depend on the world size
            _check_model(cfg, sp, model)
        model_par = cfg.tp * cfg.pp * cfg.cp
        if world_size % model_par:
            raise ConfigError(
                f"world size {world_size} is not divisible by parallel.tp*pp*cp = "
                f"{cfg.tp}*{cfg.pp}*{cfg.cp} = {model_par}"
            )
        dp = world_size // model_par if cfg.dp == -1 else cfg.dp
        if dp * model_par != world_size:
            raise ConfigError(
                f"parallel.tp*pp*cp*dp = {cfg.tp}*{cfg.pp}*{cfg.cp}*{dp} = {dp * model_par} "
                f"does not equal the world size {world_size}"
            )
        if (cfg.tp * cfg.cp * dp) % (cfg.ep * cfg.etp):
            raise ConfigError(
                f"parallel.ep*etp = {cfg.ep}*{cfg.etp} must divide parallel.tp*cp*dp = "
                f"{cfg.tp}*{cfg.cp}*{dp} (experts are laid out over the same ranks)"
            )
        dims = cls(world_size, cfg.tp, cfg.pp, cfg.cp, dp, cfg.ep, cfg.etp, cfg.vpp, sp)
        if global_batch_size is not None and micro_batch_size is not None:
            dims._check_batch(global_batch_size, micro_batch_size)
        return dims

    def _check_batch(self, gbs: int, mbs: int) -> None:
        if mbs < 1 or gbs < 1:
            raise ConfigError(f"trainer.global_batch_size={gbs} and trainer.micro_batch_size={mbs} must be >= 1")
        if gbs % (mbs * self.dp):
            raise ConfigError(
                f"trainer.global_batch_size={gbs} is not divisible by trainer.micro_batch_size*dp = "
                f"{mbs}*{self.dp} = {mbs * self.dp}"
            )

    def num_microbatches(self, gbs: int, mbs: int) -> int:
        return gbs // (mbs * self.dp)

    def build(self, backend: str = "auto", seed: int = 1234) -> None:
        """Initialise torch.distributed (env:// as torchrun sets it) and Megatron's groups."""
        from megatron.core import parallel_state, tensor_parallel

        from r1mega.compat import cpu

        cpu.enable()
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if not dist.is_initialized():
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            if "TORCHELASTIC_RUN_ID" not in os.environ and int(os.environ.get("WORLD_SIZE", 1)) == 1:
                # A plain single process: a rendezvous address inherited from some parent
                # environment may be in use; take a free local port of our own.
                os.environ["MASTER_ADDR"] = "127.0.0.1"
                os.environ["MASTER_PORT"] = str(_free_port())
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(_free_port()))
            dist.init_process_group(
                backend,
                rank=int(os.environ.get("RANK", 0)),
                world_size=int(os.environ.get("WORLD_SIZE", 1)),
            )
        if dist.get_world_size() != self.world_size:
            raise ConfigError(f"launched with {dist.get_world_size()} processes, layout expects {self.world_size}")
        if parallel_state.model_parallel_is_initialized():
            _release_megatron_groups()  # a rebuild: the previous layout's groups go first
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=self.tp,
            pipeline_model_parallel_size=self.pp,
            virtual_pipeline_model_parallel_size=self.vpp,
            context_parallel_size=self.cp,
            expert_model_parallel_size=self.ep,
            expert_tensor_parallel_size=self.etp,
        )
        cpu.reset_rng_tracker()
        tensor_parallel.model_parallel_cuda_manual_seed(seed)


def _check_model(self: ParallelConfig, sequence_parallel: bool, m: ModelConfig) -> None:
    """Constraints between the layout and the architecture (ValueError names both keys)."""
    if m.num_attention_heads % self.tp:
        raise ConfigError(
            f"parallel.tp={self.tp} does not divide model.num_attention_heads="
            f"{m.num_attention_heads}"
        )
    if not m.multi_latent_attention and m.kv_heads % self.tp:
        raise ConfigError(
            f"parallel.tp={self.tp} does not divide the key/value heads "
            f"(model.num_query_groups={m.kv_heads})"
        )
    if m.ffn_hidden_size % self.tp:
        raise ConfigError(f"parallel.tp={self.tp} does not divide model.ffn_hidden_size={m.ffn_hidden_size}")
    stages = self.pp * (self.vpp or 1)
    if m.num_layers % stages:
        raise ConfigError(
            f"model.num_layers={m.num_layers} cannot be split evenly into parallel.pp"
            f"{'*vpp' if self.vpp else ''}={stages} pipeline stages"
        )
    if m.is_moe:
        if m.num_experts % self.ep:
            raise ConfigError(f"parallel.ep={self.ep} does not divide model.num_experts={m.num_experts}")
        if m.moe_ffn_hidden_size % self.etp:
            raise ConfigError(
                f"parallel.etp={self.etp} does not divide model.moe_ffn_hidden_size={m.moe_ffn_hidden_size}"
            )
        if self.tp > 1 and not sequence_parallel:
            raise ConfigError("MoE with parallel.tp > 1 needs parallel.sequence_parallel=true")
    elif self.ep > 1 or self.etp > 1:
        raise ConfigError(f"parallel.ep={self.ep}/etp={self.etp} > 1 needs a MoE model (model.num_experts)")
    if self.cp > 1 and m.spec == "local":
        raise ConfigError("parallel.cp > 1 needs the Transformer Engine spec (model.spec=te)")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def _megatron_groups(parallel_state) -> list:
    """The process groups Megatron's ``parallel_state`` refers to (module globals, and groups in
    its global lists and dicts)."""
    found = []
    for name, value in vars(parallel_state).items():
        if not (name.startswith("_") and name.isupper()):
            continue
        items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
        found += [g for g in items if isinstance(g, dist.ProcessGroup)]
    return found


def _release_megatron_groups() -> None:
    """Destroy every group Megatron built (``destroy_model_parallel`` only destroys its two gloo
    data-parallel groups and forgets the others, which stay alive in torch.distributed's group
    map, and a few it does not even forget), keeping torch.distributed's default group."""
    import sys

    from megatron.core import parallel_state

    groups = _megatron_groups(parallel_state)
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    for name, value in list(vars(parallel_state).items()):
        if name.startswith("_") and name.isupper() and isinstance(value, dist.ProcessGroup):
            setattr(parallel_state, name, None)
    if dist.is_initialized():
        live = dist.distributed_c10d._world.pg_map
        default = dist.GroupMember.WORLD
        for group in {id(g): g for g in groups}.values():
            if group is not default and group in live:
                dist.destroy_process_group(group)
    # Megatron's rotary embeddings memoise ``forward`` with ``functools.lru_cache`` on the
    # method, which keeps up to 32 models alive -- and with them their groups -- for good.
    for module, cls in (("megatron.core.models.common.embeddings.rotary_pos_embedding", "RotaryEmbedding"),
                        ("megatron.core.models.common.embeddings.yarn_rotary_pos_embedding", "YarnRotaryEmbedding")):
        forward = getattr(getattr(sys.modules.get(module), cls, None), "forward", None)
        if hasattr(forward, "cache_clear"):
            forward.cache_clear()


def destroy() -> None:
    """Undo :meth:`ParallelDims.build`: Megatron's groups, then torch.distributed's, so that a
    process that builds and destroys groups repeatedly (the test suite) ends with the threads it
    started with (a gloo group's threads live as long as the group). Safe to call when nothing
    is initialised."""
    _release_megatron_groups()
    if dist.is_initialized():
        dist.destroy_process_group()
