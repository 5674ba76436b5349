"""One-step off-policy rollouts (``rl.off_policy_steps=1``): generate step t+1's batch with the
weights of step t while step t trains.

:class:`OneStepAhead` wraps a rollout source. At step t it returns the batch generated one step
earlier (at step 1, with nothing generated yet, a fresh one) and starts generating the batch of
step t+1 with the weights the trainer holds now, those of step t. Every row carries the step
whose weights generated it (``RolloutBatch.versions``), and the step logs the lag
(``off_policy_lag_mean`` / ``_max``: 1 from step 2 on).

Where the generation runs:

* ``concurrent`` (vLLM on its own GPUs, ``rollout.vllm.colocate=false``, one trainer rank):
  on a background thread, while the trainer runs the step; only the local part (draw,
  generate, score) runs there, and the collectives that turn it into a batch run on the main
  thread when it is needed. :meth:`sync_weights` waits for the thread before the engine's
  weights change. With several trainer ranks the vLLM placement gathers prompts across them,
  which must not race the trainer's collectives, so they generate ahead without a thread.
* otherwise (the built-in engine samples from the training model itself; colocated vLLM shares
  the GPU): right away, before the step trains. The data flow is the same, only not overlapped.

The trainer's importance ratio is taken against the old policy recomputed at training time (the
weights of step t), and the rollout/trainer correction (``rl.rollout_is_correction``: truncated
IS or masking) weighs it against the behaviour policy, whose log-probs the engine returned with
the samples (``RolloutBatch.rollout_logp``), as for on-policy mismatch.

Checkpoints save the batch generated ahead (a file in the iteration directory, with the data
position and the engine's sampling state after it was drawn), so a resumed run trains on exactly
the batch the uninterrupted run would have: it is saved, not regenerated, since the weights that
generated it are gone after the step's update.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import torch

from r1mega.rl.batch import RolloutBatch
from r1mega.rl.sources import Wrapper

AHEAD_FILE = "rollout_ahead.pt"
"""The batch generated ahead, in a checkpoint's iteration directory."""
SAVED = ("tokens", "labels", "mask", "rollout_logp", "truncated", "lengths", "row_lengths", "rewards", "versions")


class OneStepAhead(Wrapper):
    """``inner``'s batches, each generated one step before it is trained on (see module doc)."""

    def __init__(self, inner, max_steps: int, concurrent: bool = False):
        super().__init__(inner)
        self.max_steps, self.concurrent = max_steps, concurrent
        self.pending: Optional[RolloutBatch] = None
        self._thread: Optional[threading.Thread] = None
        self._raw = None
        self._error: Optional[BaseException] = None
        self._ahead: Optional[tuple[int, int]] = None  # (step, version) being generated on the thread

    def next(self, step: int, version: Optional[int] = None) -> RolloutBatch:
        """Step ``step``'s batch. Its ``timings`` are what this step spent on rollouts: the
        generation and scoring done now (sequential), or the wait for the thread (concurrent)."""
        t = time.perf_counter()
        self._collect()
        batch, self.pending = self.pending, None
        spent = {"time_rollout": time.perf_counter() - t, "time_reward": 0.0}
        if batch is None:  # the first step (or a resume without a saved batch): on-policy
            batch = self.inner.next(step)
            spent = _add(spent, batch.timings)
        if step < self.max_steps:
            self._start(step + 1, version=step)
            if self.pending is not None:
                spent = _add(spent, self.pending.timings)
        batch.timings = spent
        return batch

    def _start(self, step: int, version: int) -> None:
        if not self.concurrent:
            self.pending = self.inner.next(step, version)
            return
        self._ahead, self._raw, self._error = (step, version), None, None

        def work():
            try:
                self._raw = self.inner.produce(step)
            except BaseException as e:  # re-raised on the main thread by _collect
                self._error = e

        self._thread = threading.Thread(target=work, name="rollout-ahead", daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        """Finish a background generation: wait for it, then assemble the batch (collectives)."""
        if self._thread is None:
            return
        self._thread.join()
        self._thread = None
        if self._error is not None:
            raise RuntimeError("generating the next rollout batch failed") from self._error
        step, version = self._ahead
        self.pending = self.inner.assemble(self._raw, version)
        self._raw = None

    def sync_weights(self) -> None:
        """Wait for a generation that uses the engine's weights, then update them."""
        if self._thread is not None:
            self._thread.join()
        self.inner.sync_weights()

    def state_dict(self) -> dict:
        self._collect()
        state = dict(self.inner.state_dict())
        if self.pending is not None:
            b = self.pending
            state["_files"] = {AHEAD_FILE: {**{k: getattr(b, k) for k in SAVED}, "components": b.components,
                                            "source_metrics": b.source_metrics}}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)
        path = state.get("_path")
        if path is None:
            return
        import os

        file = os.path.join(path, AHEAD_FILE)
        if os.path.exists(file):
            saved = torch.load(file, weights_only=True)
            batch = RolloutBatch(**{k: saved[k] for k in SAVED if k != "versions"}, components=saved["components"],
                                 versions=saved["versions"], source_metrics=saved.get("source_metrics", {}))
            self.pending = self.inner.adopt(batch)


def _add(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in ("time_rollout", "time_reward")}
