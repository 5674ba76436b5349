"""One-step-ahead rollouts: which weights each batch comes from, the background thread, and the
batch in flight across a checkpoint (a fake source stands in for engine + rewarder here; the real
stage runs in tests/stages/test_grpo_off_policy.py)."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from r1mega.rl.batch import RolloutBatch
from r1mega.rl.off_policy import OneStepAhead
from r1mega.rollout.base import Generation


class FakeSource:
    """Batches whose single row encodes (step, version); logs what ran on which thread."""

    def __init__(self, slow: float = 0.0):
        self.log, self.slow, self.calls, self.busy = [], slow, 0, False

    def produce(self, step):
        self.log.append(("produce", step, threading.current_thread().name))
        self.busy = True
        time.sleep(self.slow)
        self.busy = False
        self.calls += 1
        return step

    def assemble(self, step, version):
        self.log.append(("assemble", step, threading.current_thread().name))
        g = Generation([1, 2], [step], [-0.5], "stop")
        b = RolloutBatch.from_generations([g], torch.tensor([float(step)]), {}, 0, 2)
        b.versions = torch.tensor([version])
        return b

    def next(self, step, version=None):
        return self.assemble(self.produce(step), step if version is None else version)

    def adopt(self, batch):
        return batch

    def sync_weights(self):
        self.log.append(("sync", self.busy, threading.current_thread().name))

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


def _run(source, steps):
    out = []
    for step in range(1, steps + 1):
        b = source.next(step)
        out.append((int(b.labels[0, 1]), int(b.versions[0])))  # (the step it was drawn for, its weights)
        source.sync_weights()
    return out


@pytest.mark.parametrize("concurrent", [False, True])
def test_step_t_trains_on_the_batch_drawn_for_it_with_the_weights_of_step_t_minus_1(concurrent):
    src = FakeSource(slow=0.01)
    got = _run(OneStepAhead(src, max_steps=4, concurrent=concurrent), 4)
    assert got == [(1, 1), (2, 1), (3, 2), (4, 3)]
    assert [e[1] for e in src.log if e[0] == "produce"] == [1, 2, 3, 4]  # step 5 is never generated
    assert _run(FakeSource(), 3) == [(1, 1), (2, 2), (3, 3)]  # the plain source: on-policy


def test_concurrent_generation_runs_on_a_thread_and_finishes_before_the_weights_change():
    src = FakeSource(slow=0.05)
    ahead = OneStepAhead(src, max_steps=3, concurrent=True)
    _run(ahead, 3)
    produced = [e for e in src.log if e[0] == "produce"]
    assert produced[0][2] == "MainThread" and all(e[2] == "rollout-ahead" for e in produced[1:])
    assert all(e[2] == "MainThread" for e in src.log if e[0] in ("assemble", "sync"))  # collectives
    # no generation was running when the engine's weights changed
    syncs = [e for e in src.log if e[0] == "sync"]
    assert len(syncs) == 3 and not any(busy for _, busy, _ in syncs)


def test_a_failure_on_the_thread_surfaces_on_the_main_thread():
    class Broken(FakeSource):
        def produce(self, step):
            if step == 2:
                raise OSError("engine died")
            return super().produce(step)

    ahead = OneStepAhead(Broken(), max_steps=3, concurrent=True)
    ahead.next(1)
    with pytest.raises(RuntimeError, match="next rollout batch") as e:
        ahead.next(2)
    assert isinstance(e.value.__cause__, OSError)


def test_the_batch_in_flight_is_saved_and_restored(tmp_path):
    src = FakeSource()
    ahead = OneStepAhead(src, max_steps=4)
    ahead.next(1), ahead.sync_weights(), ahead.next(2), ahead.sync_weights()
    state = ahead.state_dict()
    saved = state.pop("_files")
    (name, obj), = saved.items()
    torch.save(obj, tmp_path / name)
    restored = OneStepAhead(FakeSource(), max_steps=4)
    restored.load_state_dict({**state, "_path": str(tmp_path)})
    b = restored.next(3)
    assert (int(b.labels[0, 1]), int(b.versions[0])) == (3, 2)  # not regenerated: the saved one
    assert restored.inner.calls == src.calls + 1  # only step 4 was generated after the resume

