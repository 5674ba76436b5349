"""RewardManager: score batches of completions according to a RewardConfig.

One call of :meth:`RewardManager.score_batch` does four things:

1. **plan** -- each item is validated and routed to its data source's components; each
   component either scores it at once or returns a job (see :mod:`r1mega.rewards.core.component`).
   Bad items (missing fields, unknown ``data_source``, malformed tests) become results with
   ``error`` set and reward 0; they never raise.
2. **de-duplicate** -- identical jobs of the batch run once (a GRPO group often repeats an
   answer), and cacheable ones (maths verdicts) are served from a cross-batch LRU cache.
3. **run** -- the remaining jobs go to the worker pool (:mod:`r1mega.rewards.execution.pool`), or run
   in this process when ``num_workers=0``.
4. **combine** -- each component's value is weighted and summed into ``reward``.

The pool starts on first use; :meth:`close` (or leaving a ``with`` block) stops it and sweeps
the sandboxes. A manager is not thread-safe: call it from one thread at a time.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable, Mapping

from r1mega.rewards import registry
from r1mega.rewards.config import RewardConfig
from r1mega.rewards.core.types import Job, Outcome, RewardItem, RewardResult, Score
from r1mega.rewards.execution.inline import InlineExecutor


class _LRU:
    """A small least-recently-used cache of job outcomes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict = OrderedDict()

    def get(self, key):
        if key in self._data:
            self._data.move_to_end(key)
            return self._data[key]
        return None

    def put(self, key, value) -> None:
        if self.size <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)


class _Plan:
    """The planned work of one item: per component, a Score or a Job index."""

    def __init__(self, error: str | None = None) -> None:
        self.error = error
        self.entries: list[tuple[str, float, Score | int]] = []


class RewardManager:
    """Scores batches of items; see the module docstring."""

    def __init__(self, config: RewardConfig | Mapping[str, Any] | None = None) -> None:
        if config is None:
            config = RewardConfig()
        elif isinstance(config, Mapping):
            config = RewardConfig.from_dict(config)
        self.config = config
        self._recipes = {
            source: [(c.result_key, c.weight, registry.build(c.name, c.options)) for c in recipe.components]
            for source, recipe in config.sources.items()
        }
        self._cache = _LRU(config.cache_size)
        self._executor = None
        self._closed = False

    # ------------------------------------------------------------ lifecycle
    def _get_executor(self):
        if self._closed:
            raise RuntimeError("RewardManager is closed")
        if self._executor is None:
            workers = self.config.resolved_workers()
            if workers == 0:
                self._executor = InlineExecutor()
            else:
                from r1mega.rewards.execution.pool import WorkerPool

                self._executor = WorkerPool(workers, self.config.start_method,
                                            self.config.worker_memory_mb, self.config.drop_privileges)
        return self._executor

    @property
    def pool(self):
        """The worker pool, once started (None before the first job or with ``num_workers=0``)."""
        from r1mega.rewards.execution.pool import WorkerPool

        return self._executor if isinstance(self._executor, WorkerPool) else None

    def close(self) -> None:
        """Stop the workers and sweep their sandboxes; safe to call twice."""
        if self._executor is not None:
            self._executor.close()
            self._executor = None
        self._closed = True

    def __enter__(self) -> "RewardManager":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------ scoring
    def score(self, item: RewardItem | Mapping[str, Any]) -> RewardResult:
        """Score a single item."""
        return self.score_batch([item])[0]

    def score_batch(self, items: Iterable[RewardItem | Mapping[str, Any]]) -> list[RewardResult]:
        """Score ``items``; one RewardResult per item, in order."""
        jobs: list[Job] = []
        plans = [self._plan(item, jobs) for item in items]
        outcomes = self._run(jobs)
        return [self._combine(plan, jobs, outcomes) for plan in plans]

    def _plan(self, raw: RewardItem | Mapping[str, Any], jobs: list[Job]) -> _Plan:
        try:
            item = raw if isinstance(raw, RewardItem) else RewardItem.from_mapping(raw)
        except ValueError as exc:
            return _Plan(str(exc))
        recipe = self._recipes.get(item.data_source)
        if recipe is None:
            return _Plan(f"unknown data_source {item.data_source!r} (configured: {', '.join(sorted(self._recipes))})")
        plan = _Plan()
        for key, weight, component in recipe:
            missing = [f for f in component.required_fields if getattr(item, f) is None]
            if missing:
                return _Plan(f"missing field '{missing[0]}'")
            try:
                planned = component.plan(item)
            except ValueError as exc:
                return _Plan(str(exc))
            except Exception as exc:  # a bug must not take the whole batch down
                return _Plan(f"internal error in {key}: {type(exc).__name__}: {exc}")
            if isinstance(planned, Job):
                jobs.append(planned)
                planned = len(jobs) - 1
            plan.entries.append((key, weight, planned))
        return plan

    def _run(self, jobs: list[Job]) -> list[Outcome]:
        """Run jobs with de-duplication and caching; one outcome per job."""
        outcomes: list[Outcome | None] = [None] * len(jobs)
        unique: dict[Any, int] = {}
        to_run: list[Job] = []
        owners: list[list[int]] = []
        for i, job in enumerate(jobs):
            key = job.key()
            cached = self._cache.get(key) if key is not None and job.cacheable else None
            if cached is not None:
                outcomes[i] = cached
            elif key is not None and key in unique:
                owners[unique[key]].append(i)
            else:
                if key is not None:
                    unique[key] = len(to_run)
                to_run.append(job)
                owners.append([i])
        if to_run:
            for job, outcome, indices in zip(to_run, self._get_executor().run(to_run), owners):
                if job.cacheable and outcome.status == "ok" and job.key() is not None:
                    self._cache.put(job.key(), outcome)
                for i in indices:
                    outcomes[i] = outcome
        return outcomes  # type: ignore[return-value]

    @staticmethod
    def _combine(plan: _Plan, jobs: list[Job], outcomes: list[Outcome]) -> RewardResult:
        if plan.error is not None:
            return RewardResult(reward=0.0, error=plan.error)
        result = RewardResult(reward=0.0)
        errors = []
        for key, weight, entry in plan.entries:
            score = jobs[entry].finish(outcomes[entry]) if isinstance(entry, int) else entry
            result.components[key] = score.value
            result.reward += weight * score.value
            result.details[key] = {"status": score.status, **score.details}
            if score.error:
                errors.append(f"{key}: {score.error}")
        result.error = "; ".join(errors) or None
        return result
