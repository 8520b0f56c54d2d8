"""The ``headsurgeon`` command line: thin shells over the API.

Each command parses its options, calls one API function and renders the result as text or, with
``--json``, as one JSON document on stdout. Errors become one line and an exit code in one place
(:class:`~headsurgeon.cli.app._Group`): 0 ok, 1 headsurgeon error, 2 usage, 3 old-label check
failed. Heavy libraries are imported inside the commands, so ``--help`` answers fast.
"""

from . import check, diff, push, surgery, sweep, train  # noqa: F401  (each module registers its commands)
from .app import main

__all__ = ["main"]
