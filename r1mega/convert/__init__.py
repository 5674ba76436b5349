"""Checkpoint conversion between Hugging Face and Megatron-Core, and streaming weight export.

Public API (everything else in the package is an implementation detail):

Config translation
    :func:`model_config_from_hf` (``config.json`` dict -> ``ModelConfig``),
    :func:`hf_config_from_model` (``ModelConfig`` -> ``config.json`` dict).
Name mappings (shared by converters and the vLLM bridge)
    :func:`entries` -- every tensor as an :class:`Entry` (Megatron name template, HF names,
    merge, TP split kind, owner stage, global layer/expert id); :class:`MappingOptions` picks
    the local or TE spec; :func:`rank_entries` yields ``(chunk, local name, entry)`` for what
    this rank holds (:func:`local_name` / :func:`rank_layout` underneath).
Offline conversion (also ``r1mega-convert``)
    :func:`import_hf`, :func:`export_hf`, :func:`verify`.
Live models
    :func:`fill_from_hf` -- load HF weights straight into a sharded model;
    :func:`iter_hf_buckets` / :func:`iter_hf_tensors` -- stream a sharded model as HF
    tensors, gathered over TP/EP and broadcast over PP, optionally FP8-quantized.
Checkpoint layout (owned by :mod:`r1mega.training.ckpt_layout`)
    :func:`latest_iteration_dir`, :func:`load_model_config`, :func:`commit_iteration`.
"""

from r1mega.convert.export_stream import iter_hf_buckets, iter_hf_tensors
from r1mega.convert.exporter import export_hf
from r1mega.convert.importer import import_hf
from r1mega.convert.layout import load_model_config
from r1mega.convert.load_hf import fill_from_hf, mapping_options
from r1mega.convert.mappings import (
    Entry,
    MappingOptions,
    entries,
    hf_config_from_model,
    model_config_from_hf,
)
from r1mega.convert.sharding import local_name, rank_entries, rank_layout
from r1mega.convert.verify import verify
from r1mega.training.ckpt_layout import commit_iteration, latest_iteration_dir

__all__ = [
    "Entry", "MappingOptions", "commit_iteration", "entries", "export_hf", "fill_from_hf",
    "hf_config_from_model", "import_hf", "iter_hf_buckets", "iter_hf_tensors", "latest_iteration_dir",
    "load_model_config", "local_name", "mapping_options", "model_config_from_hf", "rank_entries", "rank_layout",
    "verify",
]
