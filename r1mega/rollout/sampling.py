"""Next-token sampling with temperature, top-k and top-p, returning the sampled log-prob."""

from __future__ import annotations

import torch


def sample(logits: torch.Tensor, temperature: float, top_p: float, top_k: int, generator: torch.Generator):
    """logits [n, V] (fp32) -> (tokens [n], logprobs [n]).

    The log-prob is of the temperature-scaled distribution over the full vocabulary (what the
    trainer recomputes); top-k/top-p only restrict which tokens may be drawn. Temperature 0 is
    greedy, with the log-prob of the unscaled distribution.
    """
    logits = logits.float()
    if temperature == 0:
        tokens = logits.argmax(-1)
        return tokens, torch.log_softmax(logits, -1).gather(-1, tokens[:, None]).squeeze(-1)
    scaled = logits / temperature
    logprobs = torch.log_softmax(scaled, -1)
    filtered = scaled.clone()
    if 0 < top_k < filtered.shape[-1]:
        kth = filtered.topk(top_k, dim=-1).values[:, -1:]
        filtered[filtered < kth] = float("-inf")
    if top_p < 1.0:
        sorted_logits, order = filtered.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass *before* it already reaches top_p (keeps at least one)
        drop = probs.cumsum(-1) - probs >= top_p
        sorted_logits[drop] = float("-inf")
        filtered = torch.full_like(filtered, float("-inf")).scatter(-1, order, sorted_logits)
    probs = filtered.softmax(-1)
    tokens = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)
    return tokens, logprobs.gather(-1, tokens[:, None]).squeeze(-1)
