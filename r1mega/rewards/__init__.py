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

Map of the package (each subpackage's and module's docstring explains its part):

==========================  =================================================================
``config``                  RewardConfig / SourceRewardConfig / ComponentConfig dataclasses
``registry``                component name -> class (``math_accuracy``, ``format``, ...)
``manager``                 RewardManager: plan, de-duplicate, run in the pool, combine
``core/``                   item/score/job/result types, the Component interface, dict ->
                            dataclass conversion, extraction of the scored part of a completion
``execution/``              running jobs: worker pool with hard deadlines, in-process executor,
                            code sandbox, kernel isolation, leftover-process cleanup
``math/``                   math_accuracy: fast path + math-verify (sympy) in a worker
``code/``                   code_accuracy: the last fenced program against its tests, sandboxed
``text/``                   format (R1 / R1-Zero layouts), language consistency, DAPO overlong
                            and repeated n-gram penalties
==========================  =================================================================

Layers, each importing only those above it: ``core``; ``execution``; the components in
``math``, ``code`` and ``text``; then ``registry``, ``config`` and ``manager``. (The forkserver
preload in ``execution`` imports the math and code job modules, late, to warm them.)
"""

from r1mega.rewards.config import ComponentConfig, RewardConfig, SourceRewardConfig, default_sources
from r1mega.rewards.core.types import RewardItem, RewardResult
from r1mega.rewards.manager import RewardManager

__all__ = [
    "ComponentConfig",
    "RewardConfig",
    "RewardItem",
    "RewardManager",
    "RewardResult",
    "SourceRewardConfig",
    "default_sources",
]
