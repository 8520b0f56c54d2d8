"""The one exception hierarchy of headsurgeon.

Every error a user can cause derives from :class:`HeadSurgeonError` and from the builtin it is
closest to, so callers can catch either. Messages say what was found, what was expected and what
to do; the CLI maps them to one line and ``exit_code`` in one place (``cli.py``).
"""

from __future__ import annotations


class HeadSurgeonError(Exception):
    """Base class of every error headsurgeon raises on purpose."""

    #: process exit code the CLI uses for this error
    exit_code = 1


class HeadNotFoundError(HeadSurgeonError, LookupError):
    """No classifier head could be found (or the explicit ``head_path`` names none)."""


class AmbiguousHeadError(HeadSurgeonError, LookupError):
    """Several modules could be the head; the message lists them."""


class UnsupportedModelError(HeadSurgeonError, ValueError):
    """The model has no growable label head (e.g. multiple choice) or changes shape when grown."""


class LabelError(HeadSurgeonError, ValueError):
    """Bad label names: empty, duplicated, already present, or unknown."""


class CheckpointError(HeadSurgeonError, OSError):
    """A model folder or checkpoint is missing, corrupt, truncated or inconsistent."""


class ModelMismatchError(CheckpointError):
    """Two models compared as parent and child are not: another architecture or task, another
    hidden size, or no label in common (``diff``)."""


class DataError(HeadSurgeonError, ValueError):
    """A data file is missing, empty, malformed, or names labels the model does not have."""


class OptionsError(HeadSurgeonError, ValueError):
    """An option has a value outside what it accepts."""


class GateFailedError(HeadSurgeonError):
    """The held-out old-label check found a regression beyond the tolerance."""

    exit_code = 3

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class HubError(HeadSurgeonError, OSError):
    """Talking to the Hugging Face Hub failed (auth, network, refused push)."""
