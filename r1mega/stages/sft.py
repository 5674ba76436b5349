"""Stage ``sft``: supervised fine-tuning (cold start, the SFT round, distillation).

Reads top to bottom: load and tokenize data -> build model, optimizer and schedule -> resume
or initialise -> for each step: take this rank's share of a global batch, count loss tokens
over all data-parallel ranks, run forward/backward over the micro-batches, step, log, save.
"""

from __future__ import annotations

from r1mega.config.schema import R1Config
from r1mega.data.loaders import load_split
from r1mega.data.sampler import EpochSampler, rank_slice
from r1mega.data.sft import collate, collate_packed, pack, packed_seq_params, tokenize_sft
from r1mega.device import device, on_gpu
from r1mega.parallel.comm import broadcast_from_last_stage
from r1mega.parallel.dims import ParallelDims
from r1mega.stages.lifecycle import StageRun
from r1mega.training.setup import build_train_model
from r1mega.training.step import global_sum, scale_for_megatron, train_step


def build_units(cfg: R1Config, tokenizer) -> tuple[list, dict]:
    """Tokenized training units (samples, or packed rows) and data statistics."""
    records, report = load_split(cfg.data, "train", need_response=True)
    samples, dropped = [], 0
    for rec in records:
        s = tokenize_sft(rec, tokenizer, cfg.data.template, cfg.data.seq_length)
        if s is None:
            dropped += 1
        else:
            samples.append(s)
    stats = {"records": len(records), "skipped_records": report.skipped, "prompt_too_long": dropped}
    if not samples:
        raise ValueError("no SFT sample fits data.seq_length; raise it or check data.template")
    if cfg.data.pack:
        rows = pack(samples, cfg.data.seq_length)
        stats["packed_rows"] = len(rows)
        return rows, stats
    return samples, stats


def make_batches(cfg: R1Config, units: list, indices: list, pad_id: int, fixed_len: int | None,
                 multiple: int = 16) -> list:
    mbs = cfg.trainer.micro_batch_size
    groups = [indices[i : i + mbs] for i in range(0, len(indices), mbs)]
    if cfg.data.pack:
        return [collate_packed([units[j] for j in g], pad_id, cfg.data.seq_length) for g in groups]
    return [collate([units[j] for j in g], pad_id, fixed_len, multiple) for g in groups]


def sft_forward_step(scale: float):
    """Megatron forward_step_func: masked token loss, pre-scaled for global normalisation.

    With ``model.mtp_num_layers > 0`` the model also adds the multi-token-prediction loss
    inside its forward (over the same ``loss_mask``, shifted per depth; see
    ``r1mega.models.mtp``); the reported ``loss`` stays the main next-token loss."""

    def forward_step(data_iterator, model):
        batch = next(data_iterator)
        b = {k: v.to(device()) for k, v in batch.items()}
        out = model(
            b["tokens"], b["position_ids"], attention_mask=None, labels=b["labels"],
            packed_seq_params=packed_seq_params(b), loss_mask=b["loss_mask"],
        )

        def loss_func(token_loss):
            mask = b["loss_mask"]
            total = (token_loss.float() * mask).sum()
            # The reported value is summed in float64: an fp32 CPU sum's rounding depends on
            # buffer alignment, which would make identical runs log losses 1 ulp apart.
            exact = (token_loss.detach().double() * mask.double()).sum()
            return total * scale, {"loss": exact * scale, "loss_tokens": mask.sum()}

        return out, loss_func

    return forward_step


def run(cfg: R1Config, dims: ParallelDims) -> dict:
    from megatron.core import parallel_state as ps

    from r1mega.models.mtp import take_mtp_losses

    stage = StageRun(cfg, dims)
    units, data_stats = build_units(cfg, stage.tokenizer)
    gbs, dp = cfg.trainer.global_batch_size, dims.dp
    lengths = [len(u.ids) for u in units] if cfg.data.group_by_length else None
    sampler = EpochSampler(len(units), gbs, cfg.trainer.seed, cfg.data.shuffle, lengths)
    tm = build_train_model(cfg.model, dims, cfg.optim, cfg.trainer, cfg.parallel.distributed_optimizer)
    meta = stage.resume(tm)
    if meta is not None:
        sampler.load_state_dict(meta["data"])
    fixed_len = cfg.data.seq_length if dims.pp > 1 else None
    nmb = dims.num_microbatches(gbs, cfg.trainer.micro_batch_size)
    seq_len = cfg.data.seq_length * (cfg.trainer.micro_batch_size if cfg.data.pack else 1)
    mbs_arg = 1 if cfg.data.pack else cfg.trainer.micro_batch_size
    first_loss = last_loss = None
    for step in stage.steps():
        indices = rank_slice(sampler.next_batch(), ps.get_data_parallel_rank(), dp)
        batches = make_batches(cfg, units, indices, stage.tokenizer.pad_token_id, fixed_len,
                               dims.pad_multiple(on_gpu()))
        loss_tokens = global_sum(sum(float(b["loss_mask"].sum()) for b in batches))
        fwd = sft_forward_step(scale_for_megatron(nmb, dp) / loss_tokens)
        m = train_step(tm, fwd, batches, seq_len, mbs_arg)
        m.update(take_mtp_losses(nmb))
        m = broadcast_from_last_stage(m)
        tokens = global_sum(sum(b["tokens"].numel() for b in batches))
        loss = m.get("loss", float("nan")) / scale_for_megatron(nmb, dp) * dp
        loss = global_sum(loss) / dp if ps.is_pipeline_last_stage() or dims.pp == 1 else loss
        first_loss = loss if first_loss is None else first_loss
        last_loss = loss
        if step % cfg.trainer.log_interval == 0 or step == cfg.trainer.max_steps:
            stage.log(step, {
                "loss": loss, "lr": m["lr"], "grad_norm": m["grad_norm"],
                "tokens_per_s": tokens / m["step_time"], "loss_tokens": loss_tokens,
                "step_time": m["step_time"], "epoch": sampler.epoch,
                **{k: v for k, v in m.items() if k.startswith("mtp_")},
            })
        if stage.should_save(step):
            stage.save(step, tm, {"data": sampler.state_dict()})
    summary = {"first_loss": first_loss, "final_loss": last_loss, "data": data_stats}
    return stage.finish(summary, ["loss", "lr", "grad_norm", "tokens_per_s"], curve_name="sft")
