"""Rule-based rewards for DeepSeek-R1-style RL: maths, code, format, language, shaping.

Usage::

    from r1mega.rewards import RewardManager

    with RewardManager() as rm:          # default recipe: math / code / synthetic
        results = rm.score_batch([
            {"completion": "<think>2*3</think> The answer is \\\\boxed{6}.",
             "data_source": "synthetic", "answer": "6"},
        ])
    results[0].reward       # 2.0 = math_accuracy 1.0 + format 1.0
    results[0].components   # {"math_accuracy": 1.0, "format": 1.0}

Map of the package (each module's docstring explains its part):

============================  ===============================================================
``config``                    RewardConfig / SourceRewardConfig / ComponentConfig dataclasses
``manager``                   RewardManager: plan, de-duplicate, run in the pool, combine
``pool`` / ``worker``         worker processes with a hard deadline per job
``math_accuracy``             final-answer extraction + fast path + math-verify (sympy)
``code_accuracy``             run the last fenced program against tests in the sandbox
``sandbox`` / ``isolation``   rlimits, namespaces, dedicated uid, cleanup of leftovers
``format_reward``             <think> layout (R1) and <answer> layout (R1-Zero)
``language_reward``           proportion of target-language words in the reasoning
``penalties``                 DAPO overlong penalty, repeated n-gram penalty
============================  ===============================================================
"""

from r1mega.rewards.config import ComponentConfig, RewardConfig, SourceRewardConfig, default_sources
from r1mega.rewards.manager import RewardManager
from r1mega.rewards.types import RewardItem, RewardResult

__all__ = [
    "ComponentConfig",
    "RewardConfig",
    "RewardItem",
    "RewardManager",
    "RewardResult",
    "SourceRewardConfig",
    "default_sources",
]
