"""Multi-token prediction (MTP): the block spec, and a ``GPTModel`` that can skip it.

DeepSeek-V3 trains ``D`` extra prediction depths next to the main head. Depth ``k`` combines the
hidden state of token ``i`` (from the previous depth; depth 0 is the main decoder) with the
embedding of token ``i + k`` -- ``eh_proj(cat[enorm(emb), hnorm(h)])`` -- runs one full decoder
layer on it and predicts token ``i + k + 1`` through the *shared* output head. Megatron-Core
0.16 implements this as ``GPTModel.mtp`` (a ``MultiTokenPredictionBlock``), built from
:func:`mtp_block_spec` on the last pipeline stage only; that stage then also holds a copy of
the input embedding (kept equal to the first stage's by Megatron's embedding group).

When MTP runs. Megatron computes the MTP loss inside ``GPTModel._postprocess`` and attaches
it to the main hidden states (``MTPLossAutoScaler``), which needs ``labels``; in 0.16 a forward
*without* labels fails (``labels.clone()`` on None) and would otherwise split the hidden states
into ``1 + D`` pieces. r1mega therefore decides per call:

* **with labels** (the SFT step): the MTP layers run and their loss is added with weight
  ``model.mtp_loss_scaling_factor / D`` per depth, over the positions of the (rolled)
  ``loss_mask`` the caller passes. Megatron normalises it per micro-batch (its token mean,
  divided by the number of micro-batches), not by r1mega's global token count (see
  ``r1mega.training.step``); with equal micro-batches the two agree.
* **without labels** (GRPO log-probs and loss, rollout decoding, ``convert verify``):
  :class:`MTPGPTModel` skips the MTP block and returns the main head's logits only, exactly
  what a model without MTP returns. RL therefore does not train the MTP weights: their
  gradient is zero (the optimizer still applies decoupled weight decay, and keeps their Adam
  states); the vLLM bridge does not send them (``r1mega.bridge.execute``).

The CPU path needs nothing beyond ``r1mega.compat.cpu``: the MTP code's only CUDA call
(``torch.cuda.current_device()`` for the loss tracker) is already redirected there.
"""

from __future__ import annotations

import contextlib
import inspect

from megatron.core.models.gpt import GPTModel

_POSTPROCESS = inspect.signature(GPTModel._postprocess)


def mtp_block_spec(config, decoder_block_spec, use_transformer_engine: bool, vp_stage=None):
    """Megatron's MTP block spec for this (virtual) pipeline stage, or None where MTP is not
    built (no MTP layers, or not the last stage). Its decoder layer is the stage's last
    decoder-layer spec (MoE for DeepSeek-V3), so r1mega's local-spec changes carry over."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_mtp_block_spec

    if not config.mtp_num_layers:
        return None
    return get_gpt_mtp_block_spec(config, decoder_block_spec, use_transformer_engine=use_transformer_engine,
                                  vp_stage=vp_stage)


@contextlib.contextmanager
def _main_head_only(config):
    """Megatron's ``_postprocess`` reads ``config.mtp_num_layers`` to decide whether to split
    off MTP outputs; hide it for one call (the config object is shared by all modules)."""
    saved = config.mtp_num_layers
    config.mtp_num_layers = None
    try:
        yield
    finally:
        config.mtp_num_layers = saved


class MTPGPTModel(GPTModel):
    """``GPTModel`` whose forward without ``labels`` returns main-head logits, skipping MTP.

    Also: Megatron 0.16's ``GPTModel.sharded_state_dict`` reads ``metadata['dp_cp_group']`` to
    mark the MTP stage's embedding copy (last pipeline stage, PP > 1) as a replica, but only its
    parent classes fill that default in; called without metadata (as r1mega's checkpoint code
    and ``dist_checkpointing`` users do) it fails. The default is filled in here first."""

    def sharded_state_dict(self, prefix: str = "", sharded_offsets: tuple = (), metadata=None):
        from megatron.core.transformer.utils import ensure_metadata_has_dp_cp_group

        return super().sharded_state_dict(prefix, sharded_offsets, ensure_metadata_has_dp_cp_group(metadata))

    def _postprocess(self, *args, **kwargs):
        call = _POSTPROCESS.bind(self, *args, **kwargs)
        if call.arguments.get("labels") is not None:
            return super()._postprocess(*args, **kwargs)
        call.arguments["mtp_in_postprocess"] = False
        with _main_head_only(self.config):
            return GPTModel._postprocess(*call.args, **call.kwargs)


def take_mtp_losses(num_microbatches: int) -> dict:
    """``{"mtp_loss": ...}`` (one key per depth beyond the first: ``mtp_2_loss``, ...): the MTP
    losses Megatron tracked over the last training step's micro-batches (mean of each
    micro-batch's token mean, averaged over data-parallel ranks), then cleared. Empty where no
    MTP loss was tracked (models without MTP, pipeline stages other than the last). Every rank
    of the last stage must call it (an all-reduce over its data-parallel group)."""
    from megatron.core.transformer.multi_token_prediction import MTPLossLoggingHelper

    tracker = MTPLossLoggingHelper.tracker
    if "values" not in tracker:
        return {}
    MTPLossLoggingHelper.reduce_loss_in_tracker()
    values = (tracker["values"] / num_microbatches).tolist()
    MTPLossLoggingHelper.clean_loss_in_tracker()
    return {("mtp_loss" if i == 0 else f"mtp_{i + 1}_loss"): v for i, v in enumerate(values)}
