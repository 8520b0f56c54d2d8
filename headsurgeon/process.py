"""Process facts the writers share: whether the process that left a temp file or folder runs.

A module of its own, below :mod:`.atomic` (temp folders beside a model) and :mod:`.record`
(``headsurgeon.json``'s temp file), so neither imports the other for it.
"""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (always ``True`` where that cannot be told safely)."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True
