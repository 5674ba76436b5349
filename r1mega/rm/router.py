"""RewardRouter: one ``score_batch`` over mixed data, routed by ``data_source``.

GRPO needs a scalar reward per response and does not care where it comes from. The router
looks up each item's ``data_source`` in ``all_scenario.routing``:

* ``rules`` (the default for unlisted sources) -> the rule-based :class:`RewardManager`
  (accuracy, format, language, ... as configured in ``reward.sources``);
* ``reward_model`` -> the preference model (:class:`RewardModelScorer`), plus
  ``format_weight`` x the think-format check, so general answers keep R1's layout. Results
  carry components ``preference`` and ``format``.

It answers with the same :class:`RewardResult` objects as the RewardManager, in input order,
so ``r1mega.stages.grpo`` and ``r1mega.eval.runner`` use it unchanged (``close()`` and the
context-manager protocol included).
"""

from __future__ import annotations

from r1mega.config.all_scenario import AllScenarioConfig
from r1mega.rewards.core.types import RewardResult
from r1mega.rewards.text.format_reward import FormatOptions, check_format


class RewardRouter:
    """Delegates each item to rules or the reward model; see the module docstring."""

    def __init__(self, rules, reward_model, cfg: AllScenarioConfig):
        self.rules = rules
        self.reward_model = reward_model
        self.cfg = cfg

    def route(self, data_source: str) -> str:
        return self.cfg.routing.get(data_source, "rules")

    def score_batch(self, items) -> list[RewardResult]:
        items = list(items)
        results: list = [None] * len(items)
        to_rm = [i for i, it in enumerate(items) if self.route(it.get("data_source", "")) == "reward_model"]
        rm_set = set(to_rm)
        to_rules = [i for i in range(len(items)) if i not in rm_set]
        if to_rules:
            for i, r in zip(to_rules, self.rules.score_batch([items[i] for i in to_rules])):
                results[i] = r
        if to_rm:
            for i, r in zip(to_rm, self._score_rm([items[i] for i in to_rm])):
                results[i] = r
        return results

    def _score_rm(self, items: list[dict]) -> list[RewardResult]:
        missing = [i for i, it in enumerate(items) if not it.get("prompt")]
        prefs = self.reward_model.score([it.get("prompt", "") for it in items], [it["completion"] for it in items])
        out = []
        for i, (it, pref) in enumerate(zip(items, prefs)):
            if i in missing:
                out.append(RewardResult(0.0, error="missing field 'prompt' (reward_model route)"))
                continue
            fmt = float(check_format(it["completion"], FormatOptions(mode="think"))[0])
            out.append(RewardResult(pref + self.cfg.format_weight * fmt, {"preference": pref, "format": fmt}))
        return out

    def close(self) -> None:
        self.rules.close()

    def __enter__(self) -> "RewardRouter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
