"""The code accuracy reward (``accuracy``): test specifications and verdicts (``tests``) and
running the candidate program against them in the sandbox (``runner``)."""
