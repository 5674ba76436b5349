"""The built-in rollout engine: sample from the Megatron model being trained.

It serves CPU runs and tests (at scale, ``rollout.engine=vllm``). Because it *is* the training
model, "updating weights" is a no-op and its log-probs differ from the trainer's only by the
KV-cache vs full-sequence arithmetic.

Decoding uses Megatron-Core's ``StaticInferenceContext`` (a per-layer KV cache) so each new
token costs one single-position forward. Prompts are decoded in groups of equal length, which
needs no padding and no attention mask (so the same code is exact for the local and the TE
specs). With expert parallelism every forward is a collective over the EP group, so all ranks
run the same number of forwards: the number of groups and the end of decoding are agreed
with an all-reduce (``lockstep``).

On CPU, decoding runs single-threaded: a decode step is a chain of tiny kernels, and OpenMP's
thread fan-out costs more than it saves (measured 20 ms vs 940 ms per step on a loaded 2-core
machine for deepseek_v3_tiny with 32 sequences).

Tensor-parallel ranks receive the same prompts and draw from identically seeded generators,
so they sample the same tokens without communicating.

Pipeline parallelism (``parallel.pp > 1``). Every stage of one pipeline holds the same prompts
(they belong to one data-parallel rank). A decode step is one micro-batch through Megatron's
forward-only pipeline schedule: the first stage embeds the new tokens, each stage runs its
layers with its own KV cache (the cache is keyed by global layer number, so one
``StaticInferenceContext`` per process holds exactly its stage's layers) and sends the hidden
states on; the last stage produces the logits and samples. The sampled tokens and their
log-probs are then broadcast from the last stage to the whole pipeline group, so every stage
knows the next input and when decoding ends. Only the last stage's generator draws.

Sequence parallelism (MoE with ``parallel.tp > 1``). The sequence dimension is split over
the TP ranks, which a one-token step cannot be. With sequence parallelism the engine decodes
without a KV cache: every step re-runs the whole sequence, right-padded to a multiple of TP.
Causal attention keeps real positions blind to the padding that follows them, and MoE routing
is per token (no capacity dropping), so the logits at the last real position are exactly those
of the unpadded sequence. Quadratic in the response length: meant for tests and evaluation of
small models; at scale use ``rollout.engine=vllm``.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.distributed as dist

from r1mega.device import device
from r1mega.rollout.base import Generation, SamplingParams
from r1mega.rollout.sampling import sample


class MegatronEngine:
    def __init__(self, chunks: list, tokenizer, max_batch: int = 256, kv_cache: bool = True,
                 lockstep: bool = False, vocab_limit: int | None = None, seed_offset: int = 0):
        if len(chunks) != 1:
            raise ValueError("rollout.engine=megatron does not decode with virtual pipeline stages "
                             "(parallel.vpp); unset parallel.vpp or use rollout.engine=vllm")
        from megatron.core.utils import get_model_config

        self.chunks = chunks
        self.model = chunks[0]
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.lockstep = lockstep and dist.is_initialized() and dist.get_world_size() > 1
        self.vocab_limit = vocab_limit or len(tokenizer)
        self.seed_offset = seed_offset
        self.calls = 0
        self.device = device()
        config = get_model_config(self.model)
        # With sequence parallelism a step must cover a multiple of TP positions (module doc).
        self.seq_multiple = config.tensor_model_parallel_size if config.sequence_parallel else 1
        self.kv_cache = kv_cache and self.seq_multiple == 1
        self.pp = _pp_size()

    # The built-in engine shares the trainer's parameters.
    def update_weights(self) -> None:
        return None

    def sleep(self) -> None:
        return None

    def wake_up(self) -> None:
        return None

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = int(state["calls"])

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        gen = torch.Generator().manual_seed(params.seed * 1_000_003 + self.seed_offset + self.calls)
        self.calls += 1
        groups = self._groups(prompts)
        results: list = [None] * len(prompts)
        was_training = self.model.training
        threads = torch.get_num_threads()
        if self.device.type == "cpu":
            torch.set_num_threads(1)
        self.model.eval()
        try:
            with torch.no_grad():
                for gi in range(self._agree_max(len(groups))):
                    idx = groups[gi] if gi < len(groups) else []
                    for i, g in zip(idx, self._decode([prompts[i] for i in idx], params, gen)):
                        results[i] = g
        finally:
            self.model.train(was_training)
            torch.set_num_threads(threads)
        return results

    def _groups(self, prompts: list[list[int]]) -> list[list[int]]:
        by_len: dict[int, list[int]] = defaultdict(list)
        for i, p in enumerate(prompts):
            if not p:
                raise ValueError(f"prompt {i} is empty")
            by_len[len(p)].append(i)
        out = []
        for length in sorted(by_len):
            idx = by_len[length]
            out += [idx[j : j + self.max_batch] for j in range(0, len(idx), self.max_batch)]
        return out

    def _agree_max(self, n: int) -> int:
        if not self.lockstep:
            return n
        t = torch.tensor([n], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def _last_logits(self, tokens: torch.Tensor, start: int, ctx) -> torch.Tensor | None:
        """Logits [b, vocab_limit] (fp32) of the last position of ``tokens`` (which start at
        absolute position ``start``); None on pipeline stages other than the last."""
        b, s = tokens.shape
        pad = -s % self.seq_multiple
        if pad:  # sequence parallel, no cache: right-pad, read the last real position
            tokens = torch.cat([tokens, tokens[:, -1:].expand(b, pad)], 1)
        pos = torch.arange(start, start + s + pad, device=self.device).expand(b, s + pad)
        kwargs = {"runtime_gather_output": True}
        if ctx is not None:
            kwargs["inference_context"] = ctx
        if self.pp == 1:
            logits = self.model(tokens, pos, None, **kwargs)
        else:
            logits = self._pipeline_forward(tokens, pos, kwargs)
        if ctx is not None:
            ctx.sequence_len_offset += s
        if logits is None:
            return None
        # With a KV cache Megatron materialises only the last position's logits.
        at = -1 if ctx is not None else s - 1
        return logits[:, at, : self.vocab_limit].float()

    def _pipeline_forward(self, tokens: torch.Tensor, pos: torch.Tensor, kwargs: dict) -> torch.Tensor | None:
        """One micro-batch through the forward-only pipeline schedule; logits on the last stage."""
        from megatron.core.pipeline_parallel import get_forward_backward_func

        def forward_step(data_iterator, model):
            out = model(tokens, pos, None, **kwargs)
            return out, lambda output, non_loss_data=True: output

        outputs = get_forward_backward_func()(
            forward_step_func=forward_step, data_iterator=iter([None]), model=self.chunks,
            num_microbatches=1, seq_length=tokens.shape[1], micro_batch_size=tokens.shape[0],
            forward_only=True, collect_non_loss_data=True,
        )
        return outputs[0] if outputs else None

    def _sample(self, logits: torch.Tensor | None, params: SamplingParams, gen: torch.Generator, b: int):
        """Next tokens and log-probs [b]; drawn on the last stage, broadcast over the pipeline."""
        if logits is not None:
            tok, lp = sample(logits, params.temperature, params.top_p, params.top_k, gen)
        if self.pp == 1:
            return tok, lp
        from megatron.core import parallel_state as ps

        both = torch.empty(2, b, dtype=torch.float64, device=self.device)
        if logits is not None:
            both[0], both[1] = tok.to(torch.float64), lp.to(torch.float64)
        dist.broadcast(both, src=ps.get_pipeline_model_parallel_last_rank(),
                       group=ps.get_pipeline_model_parallel_group())
        return both[0].long(), both[1].float()

    def _decode(self, batch: list[list[int]], params: SamplingParams, gen: torch.Generator) -> list[Generation]:
        from megatron.core.inference.contexts import StaticInferenceContext

        dummy = not batch  # a rank with nothing left still joins every EP collective
        ids = torch.tensor(batch or [[self.tokenizer.eos_token_id]], device=self.device)
        b, p = ids.shape
        ctx = StaticInferenceContext(b, p + params.max_tokens + 1) if self.kv_cache else None
        enders = {self.tokenizer.eos_token_id, *params.stop_token_ids}
        tokens = [[] for _ in range(b)]
        logps = [[] for _ in range(b)]
        done = torch.zeros(b, dtype=torch.bool)
        stopped = torch.zeros(b, dtype=torch.bool)
        seq = ids
        logits = self._last_logits(ids, 0, ctx)
        for t in range(params.max_tokens):
            tok, lp = self._sample(logits, params, gen, b)
            tok_l, lp_l = tok.tolist(), lp.tolist()
            for i in range(b):
                if done[i]:
                    continue
                tokens[i].append(tok_l[i])
                logps[i].append(lp_l[i])
                if tok_l[i] in enders or (params.stop and self._hit_stop(tokens[i], params.stop)):
                    done[i] = stopped[i] = True
            if t == params.max_tokens - 1 or self._all_done(bool(done.all()) or dummy):
                break
            step = tok.to(self.device)[:, None]
            if ctx is None:
                seq = torch.cat([seq, step], 1)
                logits = self._last_logits(seq, 0, None)
            else:
                logits = self._last_logits(step, p + t, ctx)
        if dummy:
            return []
        return [Generation.decoded(batch[i], tokens[i], logps[i], bool(stopped[i]), self.tokenizer) for i in range(b)]

    def _all_done(self, local_done: bool) -> bool:
        if not self.lockstep:
            return local_done
        t = torch.tensor([0 if local_done else 1], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item()) == 0

    def _hit_stop(self, tokens: list[int], stop: list[str]) -> bool:
        tail = self.tokenizer.decode(tokens[-16:], skip_special_tokens=False)
        return any(s in tail for s in stop)


def _pp_size() -> int:
    from megatron.core import parallel_state as ps

    return ps.get_pipeline_model_parallel_world_size() if ps.model_parallel_is_initialized() else 1
