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
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.distributed as dist

from r1mega.rollout.base import Generation, SamplingParams
from r1mega.rollout.sampling import sample


class MegatronEngine:
    def __init__(self, chunks: list, tokenizer, max_batch: int = 256, kv_cache: bool = True,
                 lockstep: bool = False, vocab_limit: int | None = None, seed_offset: int = 0):
        if len(chunks) != 1:
            raise ValueError("rollout.engine=megatron needs parallel.pp=1 (use rollout.engine=vllm with pipelining)")
        self.model = chunks[0]
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.kv_cache = kv_cache
        self.lockstep = lockstep and dist.is_initialized() and dist.get_world_size() > 1
        self.vocab_limit = vocab_limit or len(tokenizer)
        self.seed_offset = seed_offset
        self.calls = 0
        self.device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")

    # The built-in engine shares the trainer's parameters.
    def update_weights(self) -> None:
        return None

    def sleep(self) -> None:
        return None

    def wake_up(self) -> None:
        return None

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

    def _forward(self, tokens: torch.Tensor, start: int, ctx):
        b, s = tokens.shape
        pos = torch.arange(start, start + s, device=self.device).expand(b, s)
        if ctx is None:
            return self.model(tokens, pos, None)
        logits = self.model(tokens, pos, None, inference_context=ctx, runtime_gather_output=True)
        ctx.sequence_len_offset += s
        return logits

    def _decode(self, batch: list[list[int]], params: SamplingParams, gen: torch.Generator) -> list[Generation]:
        from megatron.core.inference.contexts import StaticInferenceContext

        dummy = not batch  # a rank with nothing left still joins every EP collective
        ids = torch.tensor(batch or [[self.tokenizer.eos_token_id]], device=self.device)
        b, p = ids.shape
        ctx = StaticInferenceContext(b, p + params.max_tokens + 1) if self.kv_cache else None
        eos = self.tokenizer.eos_token_id
        tokens = [[] for _ in range(b)]
        logps = [[] for _ in range(b)]
        done = torch.zeros(b, dtype=torch.bool)
        stopped = torch.zeros(b, dtype=torch.bool)
        seq = ids
        logits = self._forward(ids, 0, ctx)
        for t in range(params.max_tokens):
            last = logits[:, -1, : self.vocab_limit].float()
            tok, lp = sample(last, params.temperature, params.top_p, params.top_k, gen)
            tok_l, lp_l = tok.tolist(), lp.tolist()
            for i in range(b):
                if done[i]:
                    continue
                tokens[i].append(tok_l[i])
                logps[i].append(lp_l[i])
                if tok_l[i] == eos or (params.stop and self._hit_stop(tokens[i], params.stop)):
                    done[i] = stopped[i] = True
            if t == params.max_tokens - 1 or self._all_done(bool(done.all()) or dummy):
                break
            step = tok[:, None]
            if ctx is None:
                seq = torch.cat([seq, step], 1)
                logits = self._forward(seq, 0, None)
            else:
                logits = self._forward(step, p + t, ctx)
        if dummy:
            return []
        return [self._result(batch[i], tokens[i], logps[i], bool(stopped[i]), eos) for i in range(b)]

    def _all_done(self, local_done: bool) -> bool:
        if not self.lockstep:
            return local_done
        t = torch.tensor([0 if local_done else 1], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item()) == 0

    def _hit_stop(self, tokens: list[int], stop: list[str]) -> bool:
        tail = self.tokenizer.decode(tokens[-16:], skip_special_tokens=False)
        return any(s in tail for s in stop)

    def _result(self, prompt, tokens, logps, stopped, eos) -> Generation:
        text_ids = tokens[:-1] if stopped and tokens and tokens[-1] == eos else tokens
        text = self.tokenizer.decode(text_ids, skip_special_tokens=False)
        return Generation(prompt, tokens, logps, "stop" if stopped else "length", text)
