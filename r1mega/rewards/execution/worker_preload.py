"""Imported once by the forkserver so that every forked reward worker starts warm.

Loading sympy, latex2sympy's ANTLR parser and math-verify takes about a second, and the first
parse of each kind of expression is slower than the rest. Doing both here, in the forkserver,
means a worker that replaces a killed one is ready in milliseconds (it is a ``fork`` of an
already warm process). Failures are ignored: warming is an optimisation, and a real problem
shows up again in the first job.
"""

from __future__ import annotations

import sys

from r1mega import lifeline
from r1mega.rewards.execution import worker  # noqa: F401  (the worker loop itself)


def _in_forkserver() -> bool:
    """True in the server ``multiprocessing.forkserver`` starts (``python -c 'from multiprocessing.forkserver import main; ...'``)."""
    return sys.argv[:1] == ["-c"] and "multiprocessing.forkserver" in sys.modules


def warm() -> None:
    """Import the job modules and run a few verifications."""
    try:
        from r1mega.rewards.code import runner  # noqa: F401
        from r1mega.rewards.execution import isolation
        from r1mega.rewards.math import verify_backend

        isolation.probe()  # which namespaces work here: asked once, inherited by every fork
        verify_backend.warm_up()
    except Exception:
        pass


if _in_forkserver():
    # The forkserver stops when the pool's process closes its end of a pipe, but a process
    # forked from the pool's process holds that end too; die with the parent regardless.
    lifeline.arm_to_parent()
warm()
