"""The one exception type for a bad user configuration.

:class:`ConfigError` is what every ``validate()`` of the configuration dataclasses raises, and
what the command-line tools report as one line (``r1mega-train: error: ...``) with exit code 2.
Anything else that goes wrong -- a plain ``ValueError`` from runtime code included -- is a bug or
a failure of the run, reported with its full traceback and exit code 1.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A user configuration error; the message names the key and the offending value."""
