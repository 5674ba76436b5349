"""The exception types for bad user input.

:class:`ConfigError` is what every ``validate()`` of the configuration dataclasses raises, and
:class:`InputError` (a subclass) what readers of user files raise; the command-line tools report
both as one line (``r1mega-train: error: ...``) with exit code 2.
Anything else that goes wrong -- a plain ``ValueError`` from runtime code included -- is a bug or
a failure of the run, reported with its full traceback and exit code 1.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A user configuration error; the message names the key and the offending value."""


class InputError(ConfigError):
    """A file the user gave cannot be used (a checkpoint, a ``config.json``, a data file): told
    in one line naming the file and the tensor, field or line, like a configuration error."""
